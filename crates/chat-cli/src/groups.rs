//! `chat group ...`: create, add, remove, leave, list.

use serde_json::json;

use crate::cli::GroupCommand;
use crate::error::Result;
use crate::output::{self, print_json};
use crate::session::Ctx;

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
                    println!(
                        "#{} ({}): {}",
                        output::sanitize(&g.name),
                        g.id,
                        members.join(", ")
                    );
                }
            }
            if groups.is_empty() && !ctx.json {
                eprintln!("no groups yet: `chat group create NAME USER...`");
            }
            s.client.close().await;
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
                println!(
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
        GroupCommand::Leave { group } => {
            let g = s.group(&group).await?;
            s.connect().await?;
            s.client.leave_group(&g.id).await?;
            if ctx.json {
                print_json(&json!({"event": "left", "groupId": g.id, "name": g.name}));
            } else {
                println!("left #{}", g.name);
            }
        }
    }
    s.finish().await
}

fn report_member(ctx: &Ctx, what: &str, user: &str, group: &str) {
    if ctx.json {
        print_json(&json!({"event": what, "username": user, "group": group}));
    } else {
        println!(
            "{what} {user} {} #{group}",
            if what == "added" { "to" } else { "from" }
        );
    }
}
