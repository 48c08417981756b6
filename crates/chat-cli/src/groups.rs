//! `chat group ...`: create, add, remove, promote, demote, rename, owner,
//! leave, delete, list, info.

use serde_json::json;

use crate::cli::GroupCommand;
use crate::error::Result;
use crate::output::{print_json, sanitize};
use crate::session::{Ctx, Session};
use chat_client::{GroupMembership, MembershipAction};

/// Runs one `chat group` subcommand.
pub async fn group(ctx: &Ctx, g: GroupCommand) -> Result<()> {
    let mut s = ctx.open(false).await?;
    match g {
        GroupCommand::List => {
            let groups = s.client.groups().await?;
            for g in &groups {
                if ctx.json {
                    let members: Vec<_> = g
                        .members
                        .iter()
                        .map(|m| {
                            json!({"userId": m.user_id, "username": m.username,
                            "role": format!("{:?}", m.role).to_lowercase()})
                        })
                        .collect();
                    print_json(&json!({"event": "group", "id": g.id, "name": g.name,
                        "ownerId": g.owner_id, "members": members}));
                } else {
                    let members: Vec<String> = g
                        .members
                        .iter()
                        .map(|m| match m.role {
                            chat_client::Role::Member => m.username.clone(),
                            r => format!("{} ({})", m.username, format!("{r:?}").to_lowercase()),
                        })
                        .collect();
                    crate::outln!("#{} ({}): {}", sanitize(&g.name), g.id, members.join(", "));
                }
            }
            if groups.is_empty() && !ctx.json {
                crate::errln!("no groups yet: `{} group create NAME USER...`", ctx.chat());
            }
            s.close().await;
            return Ok(());
        }
        GroupCommand::Create { name, members } => {
            let mut ids = Vec::new();
            for m in &members {
                ids.push(s.user_id(m).await?);
            }
            s.connect().await?;
            let g = s.client.create_group(&name, &ids).await?;
            if ctx.json {
                print_json(&json!({"event": "groupCreated", "id": g.id, "name": g.name}));
            } else {
                crate::outln!(
                    "created #{} ({}) with {} member(s)",
                    g.name,
                    g.id,
                    g.members.len()
                );
            }
        }
        GroupCommand::Add { group, users } => {
            let g = s.group(&group).await?;
            s.connect().await?;
            for u in &users {
                let id = s.user_id(u).await?;
                s.client.add_member(&g.id, &id).await?;
                report_member(ctx, "added", u, &g.name);
            }
        }
        GroupCommand::Remove { group, users } => {
            let g = s.group(&group).await?;
            s.connect().await?;
            for u in &users {
                let id = s.user_id(u).await?;
                s.client.remove_member(&g.id, &id).await?;
                report_member(ctx, "removed", u, &g.name);
            }
        }
        GroupCommand::Promote { group, users } => {
            set_roles(ctx, &mut s, &group, &users, true).await?
        }
        GroupCommand::Demote { group, users } => {
            set_roles(ctx, &mut s, &group, &users, false).await?
        }
        GroupCommand::Rename { group, name } => {
            let g = s.group(&group).await?;
            s.connect().await?;
            s.client.rename_group(&g.id, &name).await?;
            if ctx.json {
                print_json(
                    &json!({"event": "renamed", "groupId": g.id, "from": g.name, "name": name}),
                );
            } else {
                crate::outln!("renamed #{} to #{}", sanitize(&g.name), sanitize(&name));
            }
        }
        GroupCommand::Info { group } => {
            let g = s.group(&group).await?;
            let v = s.client.verify_group(&g.id).await?;
            info(&mut s, &v).await;
        }
        GroupCommand::Leave { group } => {
            let g = s.group(&group).await?;
            s.connect().await?;
            let successor = s.client.leave_group(&g.id).await?;
            let owner = match &successor {
                Some(u) => Some(s.name_of(u).await),
                None => None,
            };
            if ctx.json {
                print_json(&json!({"event": "left", "groupId": g.id, "name": g.name,
                    "newOwnerId": successor, "newOwner": owner}));
            } else {
                if let Some(o) = &owner {
                    crate::outln!("{} is now the owner of #{}", sanitize(o), sanitize(&g.name));
                }
                crate::outln!("left #{}", sanitize(&g.name));
            }
        }
        GroupCommand::Owner { group, user } => {
            let g = s.group(&group).await?;
            let id = s.user_id(&user).await?;
            s.connect().await?;
            s.client.transfer_ownership(&g.id, &id).await?;
            if ctx.json {
                print_json(
                    &json!({"event": "roleChanged", "username": user, "role": "owner",
                    "group": g.name}),
                );
            } else {
                crate::outln!(
                    "{} is now the owner of #{}; you are an admin",
                    sanitize(&user),
                    sanitize(&g.name)
                );
            }
        }
        GroupCommand::Delete { group, yes } => {
            let g = s.group(&group).await?;
            if !yes {
                let asked = crate::sink::interactive()
                    && crate::devices::ask(&format!(
                        "Delete #{} for all its members? [y/N] ",
                        sanitize(&g.name)
                    ))?;
                if !asked {
                    s.close().await;
                    return Err(crate::error::CliError::Usage(format!(
                        "#{} not deleted (pass --yes to delete it without asking)",
                        sanitize(&g.name)
                    )));
                }
            }
            s.connect().await?;
            s.client.delete_group(&g.id).await?;
            if ctx.json {
                print_json(&json!({"event": "deleted", "groupId": g.id, "name": g.name}));
            } else {
                crate::outln!("deleted #{} for all its members", sanitize(&g.name));
            }
        }
    }
    s.finish().await
}

/// `chat group promote|demote GROUP USER...`.
async fn set_roles(
    ctx: &Ctx,
    s: &mut Session,
    group: &str,
    users: &[String],
    admin: bool,
) -> Result<()> {
    let g = s.group(group).await?;
    s.connect().await?;
    for u in users {
        let id = s.user_id(u).await?;
        s.client.set_role(&g.id, &id, admin).await?;
        if ctx.json {
            print_json(&json!({"event": "roleChanged", "username": u,
                "role": if admin { "admin" } else { "member" }, "group": g.name}));
        } else {
            let role = if admin { "an admin" } else { "a member" };
            crate::outln!("{} is now {role} of #{}", sanitize(u), sanitize(&g.name));
        }
    }
    Ok(())
}

/// `chat group info`: the verified view of one group.
async fn info(s: &mut Session, v: &GroupMembership) {
    let mut members = Vec::new();
    for (u, role) in &v.members {
        members.push((s.name_of(u).await, role.clone()));
    }
    let mut unconfirmed = Vec::new();
    for u in &v.unconfirmed {
        unconfirmed.push(s.name_of(u).await);
    }
    let mut changes = Vec::new();
    for c in &v.changes {
        let by = s.name_of(&c.by).await;
        changes.push((c.epoch, by, describe(s, &c.action).await));
    }
    if s.ctx.json {
        let members: Vec<_> = members
            .iter()
            .zip(&v.members)
            .map(|((name, role), (id, _))| json!({"userId": id, "username": name, "role": role}))
            .collect();
        let changes: Vec<_> = changes
            .iter()
            .zip(&v.changes)
            .map(|((epoch, by, what), c)| {
                json!({"epoch": epoch, "byId": c.by, "by": by, "change": what})
            })
            .collect();
        print_json(&json!({"event": "group", "id": v.group_id, "name": v.name,
            "signed": v.signed, "members": members, "unconfirmed": v.unconfirmed,
            "problem": v.problem, "changes": changes}));
        return;
    }
    crate::outln!("#{} ({})", sanitize(&v.name), v.group_id);
    let list: Vec<String> = members
        .iter()
        .map(|(n, r)| match r.as_str() {
            "member" => sanitize(n),
            r => format!("{} ({r})", sanitize(n)),
        })
        .collect();
    crate::outln!("  members: {}", list.join(", "));
    if !unconfirmed.is_empty() {
        crate::outln!(
            "  NOT VERIFIED: {} (listed by the server, admitted by no signed change: \
             they get none of your messages)",
            sanitize(&unconfirmed.join(", "))
        );
    }
    if let Some(p) = &v.problem {
        crate::outln!("  warning: the signed changes stop early: {}", sanitize(p));
    }
    if !v.signed {
        crate::outln!(
            "  not signed yet: made before signed membership; its owner's client signs it \
             when it next runs"
        );
    }
    for (epoch, by, what) in &changes {
        crate::outln!("  {epoch:>4}  {}  {what}", sanitize(by));
    }
}

pub(crate) async fn describe(s: &mut Session, a: &MembershipAction) -> String {
    match a {
        MembershipAction::Created { name, members } => {
            let mut names = Vec::new();
            for m in members {
                names.push(s.name_of(m).await);
            }
            format!(
                "created #{} with {}",
                sanitize(name),
                sanitize(&names.join(", "))
            )
        }
        MembershipAction::Added { user_id, role } => {
            format!("added {} as {role}", sanitize(&s.name_of(user_id).await))
        }
        MembershipAction::Removed { user_id } => {
            format!("removed {}", sanitize(&s.name_of(user_id).await))
        }
        MembershipAction::RoleChanged { user_id, role } => {
            format!("made {} {role}", sanitize(&s.name_of(user_id).await))
        }
        MembershipAction::Left => "left".to_owned(),
        MembershipAction::Renamed { name } => format!("renamed to #{}", sanitize(name)),
        MembershipAction::OwnershipTransferred { user_id } => format!(
            "handed the group to {}",
            sanitize(&s.name_of(user_id).await)
        ),
        _ => "a change this version does not know".to_owned(),
    }
}

fn report_member(ctx: &Ctx, what: &str, user: &str, group: &str) {
    if ctx.json {
        print_json(&json!({"event": what, "username": user, "group": group}));
    } else {
        crate::outln!(
            "{what} {user} {} #{group}",
            if what == "added" { "to" } else { "from" }
        );
    }
}
