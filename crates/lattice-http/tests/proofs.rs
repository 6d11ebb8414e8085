//! Merkle proofs over HTTP (issue 18): `GET /stores/{store}/proof/{*key}` answers the JSON that
//! `lattice verify-proof` checks; it verifies for a present and an absent key, fails with any
//! field changed, and needs a token that reads the store.

mod common;

use common::{Fixture, request};
use lattice_http::{HttpConfig, verify_proof};
use lattice_node::Permissions;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_of_present_and_absent_keys_verify_and_tampering_fails() {
    let f = Fixture::start(HttpConfig::default()).await;
    let (addr, rw) = (f.addr(), f.token("app", Permissions::ReadWrite).await);
    for i in 0..200 {
        let put = request(addr, "PUT", &format!("/stores/app/keys/m/{i}"), Some(&rw), i.to_string().as_bytes()).await;
        assert_eq!(put.status, 200);
    }
    let reply = request(addr, "GET", "/stores/app/proof/m/7", Some(&rw), b"").await;
    assert_eq!((reply.status, reply.header("content-type")), (200, Some("application/json")));
    let proof = reply.json();
    assert_eq!(
        (proof["key"].as_str(), proof["value"].as_str(), proof["present"].as_bool()),
        (Some("m/7"), Some("7"), Some(true))
    );
    let checked = verify_proof(&proof).unwrap();
    assert!(checked.present);
    assert_eq!(checked.attestation.signer, f.node.node_id());
    // O(log n): 200 keys sit 2 to 3 nodes deep.
    let depth = proof["path"]["siblings"].as_array().unwrap().len();
    assert!((1..=4).contains(&depth), "depth {depth}");

    let absent = request(addr, "GET", "/stores/app/proof/nosuchkey", Some(&rw), b"").await.json();
    assert_eq!(absent["present"], false);
    assert!(!verify_proof(&absent).unwrap().present);

    // Every string field changed in turn: each change is caught.
    let mut fields = Vec::new();
    collect_strings(&proof, &mut Vec::new(), &mut fields);
    assert!(fields.len() > 20, "{} fields", fields.len());
    for path in &fields {
        let mut bad = proof.clone();
        let slot = lookup(&mut bad, path);
        let text = slot.as_str().unwrap().to_string();
        let first = text.chars().next().unwrap_or('a');
        *slot = Value::String(format!(
            "{}{}",
            if first == '0' { '1' } else { '0' },
            &text[first.len_utf8().min(text.len())..]
        ));
        assert!(verify_proof(&bad).is_err(), "changing {path:?} went unnoticed");
    }
    // The proof of one key does not prove another; the present flag and the value are checked.
    let mut other = proof.clone();
    other["key"] = Value::String("m/8".into());
    assert!(verify_proof(&other).is_err());
    let mut flag = proof.clone();
    flag["present"] = Value::Bool(false);
    assert!(verify_proof(&flag).is_err());
    let mut value = proof.clone();
    value["value"] = Value::Null;
    assert!(verify_proof(&value).is_err());

    // A token without read access to the store gets 403; none at all 401.
    let other_store = f.token("other", Permissions::ReadWrite).await;
    assert_eq!(request(addr, "GET", "/stores/app/proof/m/7", Some(&other_store), b"").await.status, 403);
    assert_eq!(request(addr, "GET", "/stores/app/proof/m/7", None, b"").await.status, 401);
    f.stop().await;
}

fn collect_strings(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(at.clone()),
        Value::Object(map) => {
            for (k, v) in map {
                at.push(k.clone());
                collect_strings(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(i.to_string());
                collect_strings(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn lookup<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match v {
        Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
        other => &mut other[step.as_str()],
    })
}
