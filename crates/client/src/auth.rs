//! Signing in and out: `/v1/auth/*`.

use peyvand_api::{CodeRequest, CodeSent, SignInRequest, SignedIn};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `POST /v1/auth/code`: asks the server to send a sign-in code to a phone number.
    pub async fn request_code(&self, phone: &str) -> Result<CodeSent, ClientError> {
        let body = CodeRequest { phone: phone.to_owned() };
        Self::json(self.request(Method::POST, "v1/auth/code")?.json(&body)).await
    }

    /// `POST /v1/auth/sign-in`: trades the code (and the PIN, when the account has one) for a
    /// session token. The client does not start using the token by itself: see
    /// [`Client::with_token`].
    pub async fn sign_in(&self, request: &SignInRequest) -> Result<SignedIn, ClientError> {
        Self::json(self.request(Method::POST, "v1/auth/sign-in")?.json(request)).await
    }

    /// `POST /v1/auth/sign-out`: revokes this device's session token.
    pub async fn sign_out(&self) -> Result<(), ClientError> {
        Self::empty(self.request(Method::POST, "v1/auth/sign-out")?).await
    }
}
