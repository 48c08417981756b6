//! The account's devices (protocol version 2, DESIGN.md section 8). Listing
//! and removing work today; linking a new device from the library is not
//! built yet (the server does not deliver to linked devices yet).

use chat_proto::devices::DevicesResponse;

use super::{Client, Result};

impl Client {
    /// The account's devices, by id, and which one this is.
    pub async fn devices(&self) -> Result<DevicesResponse> {
        Ok(self.inner.rest.devices().await?)
    }

    /// Removes one of the account's devices: its tokens stop working and its
    /// connections close. Removing this device logs it out.
    pub async fn remove_device(&self, device_id: u32) -> Result<()> {
        Ok(self.inner.rest.remove_device(device_id).await?)
    }
}
