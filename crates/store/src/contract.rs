//! The contract every store backend must pass. Backends call [`run_all`] from their tests.
