//! `proof KEY` and `verify-proof FILE [--node PUBKEY]` (DESIGN.md §10): a key's Merkle proof
//! against this node's signed root, and its check, offline against a given key or against this
//! node's view of the mesh's members.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use lattice_core::AuthorId;
use lattice_http::CheckedProof;
use serde_json::{Value, json};

use super::{Context, parse_node_id};
use crate::failure::Failure;
use crate::render;

/// `proof KEY`: the proof as one JSON document (the same with or without `--json`).
pub(super) async fn prove(ctx: &Context<'_>, key: &OsStr) -> Result<i32, Failure> {
    let (node, store) = ctx.target().await?;
    let proof = node.prove(&store, key.as_bytes()).await?;
    let doc = lattice_http::proof_json(&proof);
    ctx.out.line(serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string()));
    Ok(0)
}

/// Who must have signed a proof's root.
pub enum Trust {
    /// Exactly this key (`--node`): no data dir needed.
    Node(AuthorId),
    /// This node, or a member of its mesh.
    Members,
}

/// `verify-proof` with the proof's bytes (read where the command was issued).
pub(super) async fn verify(ctx: &Context<'_>, input: Option<Vec<u8>>, node: Option<&str>) -> Result<i32, Failure> {
    let trust = match node {
        Some(text) => Trust::Node(parse_node_id(text)?),
        None => Trust::Members,
    };
    let bytes = input.ok_or_else(|| Failure::usage("verify-proof needs a FILE (or - for stdin)"))?;
    let verdict = match check(&bytes, &trust) {
        Ok(checked) => match trust {
            Trust::Members if !ctx.node().await?.vouches_for(checked.attestation.signer).await? => {
                Err(format!("the root is signed by {}, which is not a member of this mesh", checked.attestation.signer))
            }
            _ => Ok(checked),
        },
        Err(reason) => Err(reason),
    };
    let (line, to_stderr, code) = report(ctx.json, &verdict);
    if to_stderr {
        ctx.out.err(line)
    } else {
        ctx.out.line(line)
    }
    Ok(code)
}

/// `verify-proof FILE --node PUBKEY` before any data dir is resolved (none is needed).
pub fn verify_offline(bytes: &[u8], node: &str, json: bool) -> i32 {
    let trust = match parse_node_id(node) {
        Ok(key) => Trust::Node(key),
        Err(f) => {
            render::style::eprint_line(&f.line());
            return f.code();
        }
    };
    let (line, to_stderr, code) = report(json, &check(bytes, &trust));
    if to_stderr {
        render::style::eprint_line(&line);
    } else {
        println!("{line}");
    }
    code
}

/// The checks that need no node: the JSON, the hashes, the signature, and the signer if given.
fn check(bytes: &[u8], trust: &Trust) -> Result<CheckedProof, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not a proof: {e}"))?;
    let checked = lattice_http::verify_proof(&doc).map_err(|e| e.0)?;
    if let Trust::Node(key) = trust
        && checked.attestation.signer != *key
    {
        return Err(format!("the root is signed by {}, not by {key}", checked.attestation.signer));
    }
    Ok(checked)
}

/// The verdict as one line, whether it goes to stderr, and the exit code: 0 (valid) or 1
/// (invalid, with the reason).
fn report(json: bool, verdict: &Result<CheckedProof, String>) -> (String, bool, i32) {
    match verdict {
        Ok(p) => {
            let key = render::text(&p.key);
            let signer = p.attestation.signer.to_hex();
            let root = hex::encode(p.attestation.root);
            let line = if json {
                json!({"valid": true, "store": p.store.to_string(), "key": key, "present": p.present,
                    "heads": p.heads.len(), "root": root, "node": signer, "hlc": p.attestation.hlc.to_string()})
                .to_string()
            } else if p.present {
                let heads = if p.heads.len() == 1 { "1 head".to_string() } else { format!("{} heads", p.heads.len()) };
                format!("valid: {key} is present ({heads}) under root {root}, signed by {signer}")
            } else {
                format!("valid: {key} is absent under root {root}, signed by {signer}")
            };
            (line, false, 0)
        }
        Err(reason) if json => (json!({"valid": false, "reason": reason}).to_string(), false, 1),
        Err(reason) => (format!("invalid proof: {reason}"), true, 1),
    }
}
