//! Our keys on the server: first upload, one-time prekey refills (X25519
//! and post-quantum), signed and last-resort PQ prekey rotation.

use chat_proto::validate::PQ_PREKEYS_PER_UPLOAD_MAX;
use e2ee_core::{IdentityKeyPair, OneTimePreKeyPair, PqPreKeyPair, SignedPreKeyPair};
use e2ee_store::StoreError;
use rand_core::OsRng;

use crate::client::{Inner, Result, now_ms};
use crate::convert;

const DAY_MS: i64 = 86_400_000;

/// Deletes from the server the one-time prekeys whose secrets a restore
/// dropped: a peer that claimed one would send a PreKey message we could
/// not open.
async fn delete_stale(inner: &Inner) -> Result<()> {
    let stale = inner.db(|s| s.read(|tx| tx.stale_prekeys())).await?;
    if stale.is_empty() {
        return Ok(());
    }
    let mut done = Vec::with_capacity(stale.len());
    for id in stale {
        match inner.rest.delete_prekey(id).await {
            Ok(()) => done.push(id),
            Err(e) if e.code() == Some(chat_proto::rest::ErrorCode::NotFound) => done.push(id),
            Err(e) => {
                // Tried again at the next upkeep.
                tracing::warn!(error = %e, "could not delete a stale prekey");
                break;
            }
        }
    }
    tracing::debug!(
        n = done.len(),
        "stale one-time prekeys deleted from the server"
    );
    inner
        .db(move |s| s.write(|tx| tx.clear_stale_prekeys(&done)))
        .await
}

/// Brings the server's copy of our keys up to date: makes the identity on
/// first use, replaces a signed prekey older than the configured age
/// (keeping old ones a month for late PreKey messages), tops up one-time
/// prekeys when the server holds fewer than the low-water mark, and uploads
/// whatever the server lacks. `fresh_login` forces the identity and signed
/// prekey to be (re)uploaded.
pub(crate) async fn maintain(inner: &Inner, fresh_login: bool) -> Result<()> {
    let replace_devices = inner
        .replace_devices
        .load(std::sync::atomic::Ordering::Relaxed);
    let _guard = inner.keys_lock.lock().await;
    delete_stale(inner).await?;
    let status = inner.rest.prekey_status().await?;
    let batch = inner.config.prekey_batch;
    let low = inner.config.prekey_low_water;
    let max_age_ms = i64::from(inner.config.signed_prekey_max_age_days) * DAY_MS;
    let on_server = status.one_time_prekeys;
    let server_spk = status.signed_prekey_id;
    let mut pq_on_server = status.pq_one_time_prekeys;
    let server_last_resort = status.pq_last_resort_prekey_id;
    let plan = inner
        .db(move |s| {
            s.write(|tx| {
                let now = now_ms();
                let identity = match tx.identity()? {
                    Some(i) => i,
                    None => {
                        let i = IdentityKeyPair::generate(&mut OsRng);
                        tx.init_identity(&i)?;
                        i
                    }
                };
                let mut spk = tx.current_signed_prekey()?;
                let stale = spk
                    .as_ref()
                    .is_none_or(|k| now - k.created_at_ms() as i64 >= max_age_ms);
                if stale {
                    let id = spk.as_ref().map_or(1, |k| k.id().wrapping_add(1).max(1));
                    let k = SignedPreKeyPair::generate(&mut OsRng, &identity, id, now as u64);
                    tx.save_signed_prekey(&k)?;
                    tx.prune_signed_prekeys(now - 30 * DAY_MS)?;
                    spk = Some(k);
                }
                let spk = spk.ok_or(StoreError::Missing("signed prekey"))?;
                let mut unuploaded = tx.unuploaded_one_time_prekeys()?;
                let have = on_server + unuploaded.len() as u32;
                if have < low || (on_server == 0 && unuploaded.is_empty()) {
                    let mut next = tx.next_one_time_prekey_id()?;
                    let mut fresh = Vec::new();
                    for _ in have..batch {
                        fresh.push(OneTimePreKeyPair::generate(&mut OsRng, next));
                        next = next.saturating_add(1);
                    }
                    tx.add_one_time_prekeys(&fresh)?;
                    unuploaded.extend(fresh);
                }
                let spk_needed = fresh_login || stale || server_spk != Some(spk.id());

                // The last-resort PQ prekey: made on first use, replaced as
                // often as the signed prekey (old ones kept a month for
                // late PreKey messages).
                let mut last = tx.current_last_resort_pq_prekey()?;
                let last_stale = last.as_ref().is_none_or(|(_, at)| now - *at >= max_age_ms);
                if last_stale {
                    let k = PqPreKeyPair::generate(&mut OsRng, &identity, tx.next_pq_prekey_id()?);
                    tx.add_pq_prekeys(std::slice::from_ref(&k), true, now)?;
                    tx.prune_last_resort_pq_prekeys(now - 30 * DAY_MS)?;
                    last = Some((k, now));
                }
                let (last, _) = last.ok_or(StoreError::Missing("last-resort PQ prekey"))?;
                let last_needed =
                    fresh_login || last_stale || server_last_resort != Some(last.id());

                // One-time PQ prekeys, topped up like the X25519 ones. After
                // a restore the server's are not ours: replace them all.
                let replace = tx.pq_prekeys_stale_on_server()?;
                if replace {
                    pq_on_server = 0;
                }
                let mut pq_unuploaded: Vec<PqPreKeyPair> = tx
                    .unuploaded_pq_prekeys()?
                    .into_iter()
                    .filter(|(_, last_resort)| !last_resort)
                    .map(|(k, _)| k)
                    .collect();
                let pq_have = pq_on_server + pq_unuploaded.len() as u32;
                if pq_have < low || (pq_on_server == 0 && pq_unuploaded.is_empty()) {
                    let mut next = tx.next_pq_prekey_id()?;
                    let want = batch.min(PQ_PREKEYS_PER_UPLOAD_MAX as u32);
                    let mut fresh = Vec::new();
                    for _ in pq_have..want {
                        fresh.push(PqPreKeyPair::generate(&mut OsRng, &identity, next));
                        next = next.saturating_add(1);
                    }
                    tx.add_pq_prekeys(&fresh, false, now)?;
                    pq_unuploaded.extend(fresh);
                }
                pq_unuploaded.truncate(PQ_PREKEYS_PER_UPLOAD_MAX);

                if !spk_needed && !last_needed && unuploaded.is_empty() && pq_unuploaded.is_empty()
                {
                    return Ok(None);
                }
                let mut upload = convert::upload(
                    &identity,
                    spk_needed.then_some(&spk),
                    &unuploaded,
                    last_needed.then_some(&last),
                    &pq_unuploaded,
                );
                upload.pq_replace_one_time = replace;
                upload.replace_devices = replace_devices;
                let ids: Vec<u32> = unuploaded.iter().map(OneTimePreKeyPair::id).collect();
                let mut pq_ids: Vec<u32> = pq_unuploaded.iter().map(PqPreKeyPair::id).collect();
                if last_needed {
                    pq_ids.push(last.id());
                }
                Ok(Some((upload, ids, pq_ids, replace)))
            })
        })
        .await?;
    if let Some((upload, ids, pq_ids, replaced)) = plan {
        let (n, pq_n) = (ids.len(), pq_ids.len());
        inner.rest.upload_prekeys(&upload).await?;
        inner
            .db(move |s| {
                s.write(|tx| {
                    tx.mark_one_time_prekeys_uploaded(&ids)?;
                    tx.mark_pq_prekeys_uploaded(&pq_ids)?;
                    if replaced {
                        tx.clear_pq_prekeys_stale()?;
                    }
                    Ok(())
                })
            })
            .await?;
        tracing::debug!(one_time = n, pq = pq_n, "prekeys uploaded");
    }
    Ok(())
}
