//! CPython's connection authentication: a mutual HMAC challenge, with the protocol of CPython
//! 3.12+ (`{sha256}` digest prefix, HMAC over prefix + 40-byte nonce) and the legacy one of
//! 3.11 and earlier (20-byte nonce, raw HMAC-MD5) recognised by length, so our ends talk to
//! Python's of either age. Comparisons are constant-time; every handshake read is limited to
//! 256 bytes. Error texts are Python's.

use std::time::Instant;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::Sha256;

use super::Connection;
use crate::error::{Error, Result};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Nonce length of the current protocol.
const MESSAGE_LENGTH: usize = 40;
/// Lengths that mean "legacy, no digest prefix": a 3.11 nonce (20) or MD5 response (16).
const MD5_ONLY_LENGTHS: [usize; 2] = [16, 20];
/// Largest handshake message accepted.
const HANDSHAKE_LIMIT: u64 = 256;

/// Python's `deliver_challenge`: we send a challenge and check the answer, received by
/// `deadline` (`None`: as long as it takes; past it, [`Error::Timeout`]). The sends cannot
/// block: a handshake's messages are a few dozen bytes on a new connection, whose buffer holds
/// them whether or not the peer reads.
pub(crate) fn deliver_challenge(
    conn: &Connection,
    key: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let (message, challenge) = new_challenge()?;
    conn.send_bytes(&challenge)?;
    let response = conn.recv_bytes_until(HANDSHAKE_LIMIT, deadline)?;
    if verify(key, &message, &response) {
        conn.send_bytes(WELCOME)
    } else {
        let _ = conn.send_bytes(FAILURE);
        Err(wrong_digest())
    }
}

/// Python's `answer_challenge`: we answer the peer's challenge and expect a welcome, both
/// received by `deadline` (as [`deliver_challenge`]).
pub(crate) fn answer_challenge(
    conn: &Connection,
    key: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let message = conn.recv_bytes_until(HANDSHAKE_LIMIT, deadline)?;
    conn.send_bytes(&answer(key, &message)?)?;
    let reply = conn.recv_bytes_until(HANDSHAKE_LIMIT, deadline)?;
    welcomed(&reply)
}

/// [`deliver_challenge`] over the async methods (cargo feature `tokio`).
#[cfg(feature = "tokio")]
pub(crate) async fn deliver_challenge_async(conn: &Connection, key: &[u8]) -> Result<()> {
    let (message, challenge) = new_challenge()?;
    conn.send_bytes_async(&challenge).await?;
    let response = conn.recv_bytes_until_async(HANDSHAKE_LIMIT).await?;
    if verify(key, &message, &response) {
        conn.send_bytes_async(WELCOME).await
    } else {
        let _ = conn.send_bytes_async(FAILURE).await;
        Err(wrong_digest())
    }
}

/// [`answer_challenge`] over the async methods (cargo feature `tokio`).
#[cfg(feature = "tokio")]
pub(crate) async fn answer_challenge_async(conn: &Connection, key: &[u8]) -> Result<()> {
    let message = conn.recv_bytes_until_async(HANDSHAKE_LIMIT).await?;
    conn.send_bytes_async(&answer(key, &message)?).await?;
    let reply = conn.recv_bytes_until_async(HANDSHAKE_LIMIT).await?;
    welcomed(&reply)
}

/// A fresh challenge: the message to sign (digest prefix and nonce) and the frame to send.
fn new_challenge() -> Result<(Vec<u8>, Vec<u8>)> {
    let mut nonce = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::Authentication(format!("no randomness: {e}")))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&nonce);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    Ok((message, challenge))
}

fn wrong_digest() -> Error {
    Error::Authentication("digest received was wrong".into())
}

/// The answer to a received challenge frame.
fn answer(key: &[u8], frame: &[u8]) -> Result<Vec<u8>> {
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(Error::Authentication(format!(
            "Protocol error, expected challenge: message={}",
            String::from_utf8_lossy(frame)
        )));
    };
    if message.len() < MD5_ONLY_LENGTHS[1] {
        return Err(Error::Authentication(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    respond(key, message)
}

/// Whether the peer's reply to our answer is the welcome.
fn welcomed(reply: &[u8]) -> Result<()> {
    if reply != WELCOME {
        return Err(Error::Authentication("digest sent was rejected".into()));
    }
    Ok(())
}

/// The answer to a challenge `message`: raw HMAC-MD5 for a legacy 20-byte nonce, else the
/// digest prefix followed by the HMAC (over the whole message, prefix included).
fn respond(key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    match digest_name(message) {
        None => Ok(hmac_md5(key, message).finalize().into_bytes().to_vec()),
        Some(b"sha256") => {
            let mut out = b"{sha256}".to_vec();
            out.extend_from_slice(&hmac_sha256(key, message).finalize().into_bytes());
            Ok(out)
        }
        Some(other) => Err(Error::Authentication(format!(
            "unsupported message length, missing digest prefix, or unsupported digest: {}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Checks `response` to our challenge `message` in constant time: `{sha256}` + HMAC-SHA256,
/// or a legacy client's raw 16-byte HMAC-MD5 of the whole message.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> bool {
    if let Some(mac) = response.strip_prefix(b"{sha256}") {
        hmac_sha256(key, message).verify_slice(mac).is_ok()
    } else if response.len() == 16 {
        hmac_md5(key, message).verify_slice(response).is_ok()
    } else {
        false
    }
}

/// The `{name}` prefix of a message, or `None` for a legacy one (no prefix).
fn digest_name(message: &[u8]) -> Option<&[u8]> {
    if MD5_ONLY_LENGTHS.contains(&message.len()) || !message.starts_with(b"{") {
        return None;
    }
    let end = message.iter().take(20).position(|&b| b == b'}')?;
    Some(&message[1..end])
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

fn hmac_md5(key: &[u8], message: &[u8]) -> Hmac<Md5> {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::Rng;

    /// A peer that answers with garbage (random frames, random lengths, or a hang-up) gets an
    /// error from either role: never a panic, never a hang, never a success.
    #[test]
    fn handshake_survives_garbage_peers() {
        let mut rng = Rng(0x51_7cc1_b727_220a);
        for round in 0..300 {
            let (ours, theirs) = crate::pipe().unwrap();
            let frames: Vec<Vec<u8>> = (0..rng.next() % 4)
                .map(|i| {
                    let mut f = rng.bytes(300);
                    if round % 3 == 0 && i == 0 {
                        // Sometimes a well-formed challenge prefix with a garbage nonce.
                        f.splice(0..0, CHALLENGE.iter().copied());
                    }
                    f
                })
                .collect();
            let peer = std::thread::spawn(move || {
                for f in &frames {
                    let _ = theirs.send_bytes(f);
                }
                // Read whatever we are sent (so our writes never block), then hang up.
                while theirs
                    .poll(Some(std::time::Duration::from_millis(20)))
                    .unwrap_or(false)
                {
                    if theirs.recv_bytes_max(1024).is_err() {
                        break;
                    }
                }
            });
            let result = if round % 2 == 0 {
                deliver_challenge(&ours, b"key", None)
            } else {
                answer_challenge(&ours, b"key", None)
            };
            drop(ours);
            peer.join().unwrap();
            assert!(
                result.is_err(),
                "round {round}: a garbage peer was accepted"
            );
        }
    }

    #[test]
    fn responses_match_python() {
        // hmac.new(b'key', b'{sha256}' + b'n' * 40, 'sha256').digest() and the MD5 legacy
        // answer, computed with CPython 3.11.
        let message = [b"{sha256}".as_slice(), &[b'n'; 40]].concat();
        let r = respond(b"key", &message).unwrap();
        let hex: String = r[8..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&r[..8], b"{sha256}");
        assert_eq!(
            hex,
            "a562ebb15856db673794139809aad656add2b1da32c408231aac3a6fc6e4c70b"
        );
        assert!(verify(b"key", &message, &r));
        assert!(!verify(b"other", &message, &r));
        let legacy = [b'x'; 20];
        let r = respond(b"key", &legacy).unwrap();
        assert_eq!(r.len(), 16);
        assert!(
            verify(b"key", &legacy, &r),
            "a legacy client's MD5 answer is accepted"
        );
        assert!(respond(b"key", &[b"{sha3_512}".as_slice(), &[0; 40]].concat()).is_err());
        assert!(!verify(b"key", &message, &[0u8; 300]));
    }
}
