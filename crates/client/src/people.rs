//! Other people: profiles, contacts and blocks.

use peyvand_api::{ContactsImport, ContactsImported, ReachableList, UserList, UserProfile};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/users/{id}`
    pub async fn user(&self, user_id: i64) -> Result<UserProfile, ClientError> {
        Self::json(self.request(Method::GET, &format!("v1/users/{user_id}"))?).await
    }

    /// `GET /v1/users/resolve?q=`: finds a person by `@username` or by phone number.
    pub async fn resolve(&self, query: &str) -> Result<UserProfile, ClientError> {
        Self::json(self.request(Method::GET, "v1/users/resolve")?.query(&[("q", query)])).await
    }

    /// `GET /v1/interconnect/lookup?phone=`: the messengers (this one included) where a phone
    /// number can be reached.
    pub async fn lookup(&self, phone: &str) -> Result<ReachableList, ClientError> {
        Self::json(self.request(Method::GET, "v1/interconnect/lookup")?.query(&[("phone", phone)])).await
    }

    /// `GET /v1/users/search?q=`: people whose name or username matches, Persian-folded.
    pub async fn search_users(&self, query: &str) -> Result<UserList, ClientError> {
        Self::json(self.request(Method::GET, "v1/users/search")?.query(&[("q", query)])).await
    }

    /// `POST /v1/contacts/import`: adds phone numbers to the contacts and says who is here.
    pub async fn import_contacts(&self, phones: Vec<String>) -> Result<ContactsImported, ClientError> {
        let body = ContactsImport { phones };
        Self::json(self.request(Method::POST, "v1/contacts/import")?.json(&body)).await
    }

    /// `GET /v1/contacts`
    pub async fn contacts(&self) -> Result<UserList, ClientError> {
        Self::json(self.request(Method::GET, "v1/contacts")?).await
    }

    /// `DELETE /v1/contacts/{user_id}`
    pub async fn remove_contact(&self, user_id: i64) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, &format!("v1/contacts/{user_id}"))?).await
    }

    /// `GET /v1/blocks`
    pub async fn blocks(&self) -> Result<UserList, ClientError> {
        Self::json(self.request(Method::GET, "v1/blocks")?).await
    }

    /// `POST /v1/users/{user_id}/report`
    pub async fn report(&self, user_id: i64, reason: &str) -> Result<(), ClientError> {
        let body = peyvand_api::ReportUser { reason: reason.to_owned() };
        Self::empty(self.request(Method::POST, &format!("v1/users/{user_id}/report"))?.json(&body)).await
    }

    /// `PUT /v1/blocks/{user_id}`
    pub async fn block(&self, user_id: i64) -> Result<(), ClientError> {
        Self::empty(self.request(Method::PUT, &format!("v1/blocks/{user_id}"))?).await
    }

    /// `DELETE /v1/blocks/{user_id}`
    pub async fn unblock(&self, user_id: i64) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, &format!("v1/blocks/{user_id}"))?).await
    }
}
