//! Groups from the application's side: create, add, remove, leave, rename,
//! list. Sending to a group (sender keys, rotation) is `Inner::send_group`.

use chat_proto::rest::{self, AddMemberRequest, CreateGroupRequest, UpdateGroupRequest};

use super::{Client, Result};
use crate::event::Event;

pub(crate) fn store_group(g: &rest::Group) -> e2ee_store::Group {
    e2ee_store::Group {
        id: g.id.clone(),
        name: g.name.clone(),
        owner: g.owner_id.clone(),
        created_at_ms: g.created_at,
        left: false,
        members: g
            .members
            .iter()
            .map(|m| (m.user_id.clone(), format!("{:?}", m.role).to_lowercase()))
            .collect(),
    }
}

impl Client {
    /// Creates a group with us as owner and these members.
    pub async fn create_group(&self, name: &str, members: &[String]) -> Result<rest::Group> {
        let g = self
            .inner
            .rest
            .create_group(&CreateGroupRequest {
                name: name.to_owned(),
                description: None,
                member_ids: members.to_vec(),
            })
            .await?;
        let sg = store_group(&g);
        self.inner
            .db(move |s| s.write(|tx| tx.save_group(&sg)))
            .await?;
        Ok(g)
    }

    /// Adds a member (owner or admin). They get our current chain when we
    /// next send, never older ones.
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<rest::Group> {
        let g = self
            .inner
            .rest
            .add_member(
                group_id,
                &AddMemberRequest {
                    user_id: user_id.to_owned(),
                    role: None,
                },
            )
            .await?;
        let _guard = self.inner.group_lock.lock().await;
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Removes a member (owner or admin). Our sender key is replaced at
    /// once; the others replace theirs when they notice.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<()> {
        self.inner.rest.remove_member(group_id, user_id).await?;
        let _guard = self.inner.group_lock.lock().await;
        self.inner.refresh_group(group_id).await?;
        Ok(())
    }

    /// Leaves a group: history stays, our keys for it are dropped.
    pub async fn leave_group(&self, group_id: &str) -> Result<()> {
        let me = self.inner.me()?;
        self.inner.rest.remove_member(group_id, &me.user_id).await?;
        let gid = group_id.to_owned();
        self.inner
            .db(move |s| s.write(|tx| tx.mark_group_left(&gid)))
            .await?;
        self.inner.emit(Event::GroupChanged {
            group_id: group_id.to_owned(),
        });
        Ok(())
    }

    /// Renames a group.
    pub async fn rename_group(&self, group_id: &str, name: &str) -> Result<rest::Group> {
        let g = self
            .inner
            .rest
            .update_group(
                group_id,
                &UpdateGroupRequest {
                    name: Some(name.to_owned()),
                    description: None,
                },
            )
            .await?;
        let _guard = self.inner.group_lock.lock().await;
        self.inner.refresh_group(group_id).await?;
        Ok(g)
    }

    /// Our groups, from the server.
    pub async fn groups(&self) -> Result<Vec<rest::Group>> {
        Ok(self.inner.rest.groups().await?)
    }

    /// One group with its members, from the server.
    pub async fn group(&self, group_id: &str) -> Result<rest::Group> {
        Ok(self.inner.rest.group(group_id).await?)
    }
}
