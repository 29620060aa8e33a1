//! The signed-in person's own account: `/v1/me*` and `/v1/devices*`.

use peyvand_api::{Account, DeviceList, PinRequest, PrivacySettings, ProfileUpdate, SettingsUpdate};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /v1/me`
    pub async fn me(&self) -> Result<Account, ClientError> {
        Self::json(self.request(Method::GET, "v1/me")?).await
    }

    /// `PATCH /v1/me`: changes the fields that are given; an empty username removes it.
    pub async fn update_profile(&self, update: &ProfileUpdate) -> Result<Account, ClientError> {
        Self::json(self.request(Method::PATCH, "v1/me")?.json(update)).await
    }

    /// `DELETE /v1/me`: deletes the account for good.
    pub async fn delete_account(&self) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, "v1/me")?).await
    }

    /// `PUT /v1/me/pin`: sets the second-step PIN, or changes it (giving the current one).
    pub async fn set_pin(&self, pin: &str, current_pin: Option<&str>) -> Result<(), ClientError> {
        let body = PinRequest { pin: Some(pin.to_owned()), current_pin: current_pin.map(str::to_owned) };
        Self::empty(self.request(Method::PUT, "v1/me/pin")?.json(&body)).await
    }

    /// `DELETE /v1/me/pin`: removes the PIN.
    pub async fn remove_pin(&self, current_pin: &str) -> Result<(), ClientError> {
        let body = PinRequest { pin: None, current_pin: Some(current_pin.to_owned()) };
        Self::empty(self.request(Method::DELETE, "v1/me/pin")?.json(&body)).await
    }

    /// `GET /v1/me/settings`
    pub async fn settings(&self) -> Result<PrivacySettings, ClientError> {
        Self::json(self.request(Method::GET, "v1/me/settings")?).await
    }

    /// `PATCH /v1/me/settings`: changes the settings that are given.
    pub async fn update_settings(&self, update: &SettingsUpdate) -> Result<PrivacySettings, ClientError> {
        Self::json(self.request(Method::PATCH, "v1/me/settings")?.json(update)).await
    }

    /// `GET /v1/devices`
    pub async fn devices(&self) -> Result<DeviceList, ClientError> {
        Self::json(self.request(Method::GET, "v1/devices")?).await
    }

    /// `DELETE /v1/devices/{id}`: signs one device out.
    pub async fn revoke_device(&self, device_id: i64) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, &format!("v1/devices/{device_id}"))?).await
    }

    /// `DELETE /v1/devices`: signs every device out, this one included.
    pub async fn revoke_all_devices(&self) -> Result<(), ClientError> {
        Self::empty(self.request(Method::DELETE, "v1/devices")?).await
    }
}
