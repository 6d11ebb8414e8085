//! Text for people: tables and the text of each command that prints more than one line.

use lattice_core::{Head, Kind, StoreId};
use lattice_net::SyncOutcome;
use lattice_node::{PeerSync, StoreInfo, TokenRecord};
use lattice_store::Value;

use super::{PeerView, StatusView, StoreNames, text};
use crate::protocol::Out;

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let all = std::iter::once(header.iter().map(|s| s.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned());
    for row in all {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// `list-stores`.
pub fn stores(stores: &[StoreInfo]) -> String {
    if stores.is_empty() {
        return "(no stores)\n".into();
    }
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|s| {
            vec![s.name.clone(), s.id.to_string(), s.state.as_str().into(), s.created_at.clone(), s.created_by.clone()]
        })
        .collect();
    table(&["NAME", "UUID", "STATE", "CREATED AT", "CREATED BY"], &rows)
}

/// `list-tokens` (never a secret).
pub fn tokens(tokens: &[TokenRecord], now_ms: u64) -> String {
    if tokens.is_empty() {
        return "(no tokens)\n".into();
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                if t.name.is_empty() { "-".into() } else { t.name.clone() },
                t.store_id.map_or_else(|| "-".into(), |s| s.to_string()),
                t.permissions.map_or("-", |p| p.as_str()).into(),
                t.state(now_ms).into(),
                t.expires_at.clone().unwrap_or_else(|| "never".into()),
                t.rate.map_or_else(|| "default".into(), lattice_node::format_rate),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STORE", "PERMISSIONS", "STATE", "EXPIRES", "RATE"], &rows)
}

/// `peers`.
pub fn peers(peers: &[PeerView]) -> String {
    let dash = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let name = if p.this_node { format!("{} (this node)", p.info.name) } else { p.info.name.clone() };
            let mut status = p.status.to_string();
            for (store, seq) in &p.equivocated {
                status.push_str(&format!(", equivocated in store {store} at seq {seq}"));
            }
            vec![p.id.to_hex(), name, status, dash(&p.local.last_seen), dash(&p.local.last_sync)]
        })
        .collect();
    table(&["NODE ID", "NAME", "STATUS", "LAST SEEN", "LAST SYNC"], &rows)
}

/// `status`.
pub fn status(view: &StatusView<'_>) -> String {
    let status = view.status;
    let current = match &status.current {
        Some(s) => format!("{} ({})", s.name, s.id),
        None => "none (pick one with `lattice use NAME`)".into(),
    };
    let daemon = match view.daemon {
        Some((pid, owner)) => format!("{owner} (pid {pid})"),
        None => "none".into(),
    };
    let mut text = format!(
        "node id:       {}\ndata dir:      {}\ncurrent store: {current}\ndaemon:        {daemon}\n",
        status.node_id,
        status.data_dir.display()
    );
    if view.listen.is_empty() {
        text.push_str("listening:     not on the network (run `lattice serve`)\n");
    } else {
        let addrs: Vec<String> = view.listen.iter().map(|a| a.to_string()).collect();
        text.push_str(&format!("listening:     {}\n", addrs.join(", ")));
    }
    if let Some(addr) = view.http {
        text.push_str(&format!("http api:      http://{addr}\n"));
    }
    if view.members.is_empty() {
        text.push_str("peers:         none\n");
    } else {
        text.push_str("peers:\n");
        for m in view.members {
            text.push_str(&format!("  {}  {}  {}\n", m.id, m.status, m.name));
        }
    }
    text.push_str("stores:\n");
    text.extend(store_figures(view).lines().map(|l| format!("  {l}\n")));
    for (store, figures) in &status.stores {
        for (author, seq) in &figures.equivocated {
            text.push_str(&format!("  {}: equivocated: {author} (seq {seq})\n", store.name));
        }
    }
    text
}

/// The per-store figures of `status`.
fn store_figures(view: &StatusView<'_>) -> String {
    let rows: Vec<Vec<String>> = view
        .status
        .stores
        .iter()
        .map(|(s, f)| {
            let figures = [f.entries, f.authors, f.keys, f.orphans, f.conflicts].map(|n| n.to_string());
            [s.name.clone(), s.id.to_string()].into_iter().chain(figures).collect()
        })
        .collect();
    table(&["NAME", "UUID", "ENTRIES", "AUTHORS", "KEYS", "ORPHANS", "CONFLICTS"], &rows)
}

/// `get -v` of a reserved key of the root store: the effective value, above the raw heads (the
/// winner among them may be a write that took no effect).
pub fn effective(value: Option<&[u8]>) -> String {
    let value = value.map_or_else(|| "(none took effect)".to_string(), super::text);
    format!("effective: {value}  (the control plane's; the heads below are the raw entries)\n")
}

/// `get -v`: every head, the winner marked `*`.
pub fn heads(heads: &[Head]) -> String {
    let best = lattice_core::winner(heads).map(|h| h.hash);
    let mut text = String::new();
    for h in heads {
        let mark = if Some(h.hash) == best { "*" } else { " " };
        let value = match (h.tombstone, h.kind) {
            (true, _) => "(deleted)".to_string(),
            (false, Kind::Register) => super::text(&h.value),
            // A counter's or a set's value is not in its head: the first line of `get` shows it.
            (false, kind) => format!("({kind})"),
        };
        text.push_str(&format!("{mark} {value}  author {}  hlc {}  hash {}\n", h.author, h.hlc, h.hash));
    }
    text
}

/// `get -v` of a counter or a set: its kind and value, above the heads.
pub fn kinded(value: &Value) -> String {
    match value {
        Value::Counter(sum) => format!("counter: {sum}\n"),
        Value::Set(members) => {
            let members: Vec<String> = members.iter().map(|m| text(m)).collect();
            format!("set: {} members: {}\n", members.len(), members.join(" "))
        }
        Value::Register(bytes) => format!("register: {}\n", text(bytes)),
    }
}

/// `smembers`: one member a line (in the order given: byte order from the store).
pub fn members(members: &[Vec<u8>]) -> String {
    members.iter().map(|m| format!("{}\n", text(m))).collect()
}

/// A page of `list`: `KEY<TAB>VALUE` lines.
pub fn key_values(page: &[(Vec<u8>, Vec<u8>)]) -> String {
    page.iter().map(|(k, v)| format!("{}\t{}\n", text(k), text(v))).collect()
}

/// `sync`: a line per peer on stdout, or on stderr for a peer whose sync failed.
pub fn sync(results: &[PeerSync], names: &StoreNames, out: &Out) {
    if results.is_empty() {
        out.line("no peers to sync with (invite one, or join a mesh)");
    }
    for r in results {
        match &r.result {
            Ok(stores) => sync_peer(r, stores, names, out),
            Err(e) => out.err(format_args!("sync with {} failed: {e}", r.peer)),
        }
    }
}

fn sync_peer(r: &PeerSync, stores: &[(StoreId, Result<SyncOutcome, String>)], names: &StoreNames, out: &Out) {
    let total =
        |count: fn(&SyncOutcome) -> u64| -> u64 { stores.iter().filter_map(|(_, s)| s.as_ref().ok()).map(count).sum() };
    let (received, sent, held) = (total(|o| o.received), total(|o| o.sent), total(|o| o.unauthorised));
    let errors: Vec<String> = stores
        .iter()
        .filter_map(|(id, s)| {
            let name = names.get(id).cloned().unwrap_or_else(|| id.to_string());
            s.as_ref().err().map(|e| format!("store {name}: {e}"))
        })
        .collect();
    if !errors.is_empty() {
        // One line per peer, whatever the number of stores.
        out.err(format_args!("sync with {} failed: {}", r.peer, errors.join("; ")));
        return;
    }
    out.line(format_args!("synced with {}: {received} entries received, {sent} sent", r.peer));
    if held > 0 {
        out.err(format_args!(
            "warning: {held} entries from {} are held: their authors are not members of this mesh",
            r.peer
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_node::StoreRef;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    fn author() -> lattice_core::AuthorId {
        lattice_core::Identity::generate().author()
    }

    #[test]
    fn peers_show_where_a_node_equivocated() {
        let (forker, honest) = (author(), author());
        let view = PeerView::active_member;
        let text = peers(&[view(forker, vec![("default".into(), 3), ("app".into(), 7)]), view(honest, vec![])]);
        let row = |id: lattice_core::AuthorId| text.lines().find(|l| l.starts_with(&id.to_hex())).unwrap().to_string();
        assert!(
            row(forker).contains("active, equivocated in store default at seq 3, equivocated in store app at seq 7"),
            "{text}"
        );
        assert!(!row(honest).contains("equivocated"), "{text}");
    }

    #[test]
    fn status_shows_equivocated_authors_per_store() {
        let forker = author();
        let store = |name: &str| StoreRef { id: StoreId::new_random(), name: name.into() };
        let forked = lattice_store::StoreStatus { equivocated: vec![(forker, 4)], ..Default::default() };
        let status = lattice_node::NodeStatus {
            node_id: author(),
            data_dir: "/tmp/x".into(),
            current: None,
            stores: vec![(store("root"), Default::default()), (store("default"), forked)],
        };
        let view = StatusView { status: &status, members: &[], listen: &[], daemon: None, http: None };
        let text = super::status(&view);
        assert!(text.contains(&format!("  default: equivocated: {forker} (seq 4)\n")), "{text}");
        assert_eq!(text.matches("equivocated").count(), 1, "only the store with a fork: {text}");
    }
}
