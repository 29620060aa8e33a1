//! What a file is: detection, kinds and their allow-lists, photo, audio and video inspection.
