//! Text for people: tables and the text of each command that prints more than one line.

use lattice_core::{Head, StoreId};
use lattice_net::SyncOutcome;
use lattice_node::{PeerSync, StoreInfo, TokenRecord};

use super::style::Palette;
use super::time::local_text;
use super::{PeerView, StatusView, StoreNames, text};
use crate::protocol::Out;

/// Left-aligned columns separated by two spaces, the header in bold.
pub fn table(header: &[&str], rows: &[Vec<String>], palette: Palette) -> String {
    painted_table(header, rows, palette, |_, cell| cell.to_string())
}

/// As [`table`], each body cell painted by `paint(column, cell)`. Columns are as wide as their
/// plain text: escape codes take no room on a terminal.
fn painted_table(
    header: &[&str],
    rows: &[Vec<String>],
    palette: Palette,
    paint: impl Fn(usize, &str) -> String,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    push_row(&mut text, header.iter().map(|h| (h.chars().count(), palette.bold(h))), &widths);
    for row in rows {
        push_row(&mut text, row.iter().enumerate().map(|(i, c)| (c.chars().count(), paint(i, c))), &widths);
    }
    text
}

/// One line of a table from (plain width, painted text) cells, padded after the paint.
fn push_row(text: &mut String, cells: impl Iterator<Item = (usize, String)>, widths: &[usize]) {
    let cells: Vec<String> = cells
        .zip(widths)
        .map(|((len, painted), w)| format!("{painted}{}", " ".repeat(w.saturating_sub(len))))
        .collect();
    text.push_str(cells.join("  ").trim_end());
    text.push('\n');
}

/// `list-stores`.
pub fn stores(stores: &[StoreInfo], palette: Palette) -> String {
    if stores.is_empty() {
        return "(no stores)\n".into();
    }
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.id.to_string(),
                s.state.as_str().into(),
                local_text(&s.created_at),
                s.created_by.clone(),
            ]
        })
        .collect();
    table(&["NAME", "UUID", "STATE", "CREATED AT", "CREATED BY"], &rows, palette)
}

/// `list-tokens` (never a secret).
pub fn tokens(tokens: &[TokenRecord], now_ms: u64, palette: Palette) -> String {
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
                t.expires_at.as_deref().map_or_else(|| "never".into(), local_text),
                t.rate.map_or_else(|| "default".into(), lattice_node::format_rate),
            ]
        })
        .collect();
    table(&["ID", "NAME", "STORE", "PERMISSIONS", "STATE", "EXPIRES", "RATE"], &rows, palette)
}

/// `peers`.
pub fn peers(peers: &[PeerView], palette: Palette) -> String {
    let when = |t: &Option<String>| t.as_deref().map_or_else(|| "-".into(), local_text);
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let name = if p.this_node { format!("{} (this node)", p.info.name) } else { p.info.name.clone() };
            let mut status = p.status.to_string();
            for (store, seq) in &p.equivocated {
                status.push_str(&format!(", equivocated in store {store} at seq {seq}"));
            }
            vec![p.id.to_hex(), name, status, when(&p.local.last_seen), when(&p.local.last_sync)]
        })
        .collect();
    let paint = |column, cell: &str| if column == 2 { palette.member_status(cell) } else { cell.to_string() };
    painted_table(&["NODE ID", "NAME", "STATUS", "LAST SEEN", "LAST SYNC"], &rows, palette, paint)
}

/// `status`.
pub fn status(view: &StatusView<'_>, palette: Palette) -> String {
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
        let rows: Vec<Vec<String>> =
            view.members.iter().map(|m| vec![m.id.to_string(), or_dash(&m.name), or_dash(&m.status)]).collect();
        let paint = |column, cell: &str| if column == 2 { palette.member_status(cell) } else { cell.to_string() };
        let members = painted_table(&["NODE ID", "NAME", "STATUS"], &rows, palette, paint);
        text.extend(members.lines().map(|l| format!("  {l}\n")));
    }
    text.push_str("stores:\n");
    text.extend(store_figures(view, palette).lines().map(|l| format!("  {l}\n")));
    for (store, figures) in &status.stores {
        for (author, seq) in &figures.equivocated {
            text.push_str(&format!("  {}: equivocated: {author} (seq {seq})\n", store.name));
        }
    }
    text
}

/// A cell that would be empty (a member whose name or standing is not known yet) as `-`.
fn or_dash(text: &str) -> String {
    if text.is_empty() { "-".into() } else { text.into() }
}

/// The per-store figures of `status`.
fn store_figures(view: &StatusView<'_>, palette: Palette) -> String {
    let rows: Vec<Vec<String>> = view
        .status
        .stores
        .iter()
        .map(|(s, f)| {
            let figures = [f.entries, f.authors, f.keys, f.orphans, f.conflicts].map(|n| n.to_string());
            let root = hex::encode(&f.root[..6]);
            [s.name.clone(), s.id.to_string()].into_iter().chain(figures).chain([root]).collect()
        })
        .collect();
    table(&["NAME", "UUID", "ENTRIES", "AUTHORS", "KEYS", "ORPHANS", "CONFLICTS", "ROOT"], &rows, palette)
}

/// `get -v` of a reserved key of the root store: the effective value, above the raw heads (the
/// winner among them may be a write that took no effect).
pub fn effective(value: Option<&[u8]>) -> String {
    let value = value.map_or_else(|| "(none took effect)".to_string(), super::text);
    format!("effective: {value}  (the control plane's; the heads below are the raw entries)\n")
}

/// `get -v`: every head, the winner marked `*`, each with the local time of its HLC.
pub fn heads(heads: &[Head], palette: Palette) -> String {
    let best = lattice_core::winner(heads).map(|h| h.hash);
    let mut text = String::new();
    for h in heads {
        let mark = if Some(h.hash) == best { palette.green("*") } else { " ".to_string() };
        let value = match (h.tombstone, h.kind) {
            (true, _) => "(deleted)".to_string(),
            (false, lattice_core::Kind::Register) => super::text(&h.value),
            (false, kind) => format!("({} op)", kind.name()),
        };
        let at = super::time::hlc(h.hlc);
        text.push_str(&format!("{mark} {value}  author {}  at {at}  hash {}\n", h.author, h.hash));
    }
    text
}

/// `history`: a line per version, oldest first: time and HLC, what it wrote, author and hash;
/// `head` marks the entries that are heads now.
pub fn history(versions: &[lattice_store::Version], palette: Palette) -> String {
    let mut text = String::new();
    for v in versions {
        let change = match v.ops.last() {
            Some(lattice_core::Op::Put { value, .. }) => format!("put {}", super::text(value)),
            Some(lattice_core::Op::Delete { .. }) | None => "delete".to_string(),
            Some(lattice_core::Op::CounterAdd { .. }) => {
                let by = v.counter_added();
                format!("incr {by:+}")
            }
            Some(lattice_core::Op::SetAdd { member, .. }) => format!("sadd {}", super::text(member)),
            Some(lattice_core::Op::SetRemove { member, .. }) => format!("srem {}", super::text(member)),
        };
        let head = if v.head { format!("  {}", palette.green("head")) } else { String::new() };
        let at = super::time::hlc(v.hlc);
        text.push_str(&format!("{at}  {change}  author {}  hash {}{head}\n", v.author, v.hash));
    }
    text
}

/// `get -v` of a counter or a set: the key's kind and value, above its heads (each an op).
pub fn kinded(value: &lattice_store::Value) -> String {
    format!("{}: {}\n", value.kind().name(), typed(value))
}

/// One-line text of a typed value: a register's text, a counter's sum, a set as `{a, b}`.
pub fn typed(value: &lattice_store::Value) -> String {
    match value {
        lattice_store::Value::Register(bytes) => text(bytes),
        lattice_store::Value::Counter(sum) => sum.to_string(),
        lattice_store::Value::Set(members) => {
            format!("{{{}}}", members.iter().map(|m| text(m)).collect::<Vec<_>>().join(", "))
        }
    }
}

/// A page of `list`: `KEY<TAB>VALUE` lines; a counter or a set says its kind after the value
/// (`hits<TAB>42  (counter)`, `team<TAB>{alice, bob}  (set)`).
pub fn key_values(page: &[(Vec<u8>, lattice_store::Value)]) -> String {
    page.iter()
        .map(|(k, v)| match v {
            lattice_store::Value::Register(_) => format!("{}\t{}\n", text(k), typed(v)),
            _ => format!("{}\t{}  ({})\n", text(k), typed(v), v.kind().name()),
        })
        .collect()
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
    let in_sync = stores.iter().filter(|(_, s)| s.as_ref().is_ok_and(|o| o.in_sync)).count();
    if in_sync == stores.len() && !stores.is_empty() {
        let what = if in_sync == 1 { "1 store".to_string() } else { format!("{in_sync} stores") };
        out.line(format_args!("in sync with {}: {what}, the signed roots match", r.peer));
    } else {
        out.line(format_args!("synced with {}: {received} entries received, {sent} sent", r.peer));
    }
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
    use crate::render::MemberLine;
    use lattice_node::StoreRef;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]], Palette::new(false));
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    #[test]
    fn painted_tables_keep_their_columns() {
        let rows = [vec!["xyz".into(), "1".into()]];
        let t = painted_table(&["A", "BB"], &rows, Palette::new(true), |_, c| Palette::new(true).red(c));
        assert_eq!(t, "\x1b[1mA\x1b[0m    \x1b[1mBB\x1b[0m\n\x1b[31mxyz\x1b[0m  \x1b[31m1\x1b[0m\n");
    }

    fn author() -> lattice_core::AuthorId {
        lattice_core::Identity::generate().author()
    }

    #[test]
    fn peers_show_where_a_node_equivocated() {
        let (forker, honest) = (author(), author());
        let view = PeerView::active_member;
        let text = peers(
            &[view(forker, vec![("default".into(), 3), ("app".into(), 7)]), view(honest, vec![])],
            Palette::new(false),
        );
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
        let text = super::status(&view, Palette::new(false));
        assert!(text.contains(&format!("  default: equivocated: {forker} (seq 4)\n")), "{text}");
        assert_eq!(text.matches("equivocated").count(), 1, "only the store with a fork: {text}");
    }

    fn status_with_members(members: &[MemberLine], palette: Palette) -> String {
        let status = lattice_node::NodeStatus {
            node_id: author(),
            data_dir: "/tmp/x".into(),
            current: None,
            stores: vec![(StoreRef { id: StoreId::new_random(), name: "default".into() }, Default::default())],
        };
        super::status(&StatusView { status: &status, members, listen: &[], daemon: None, http: None }, palette)
    }

    #[test]
    fn status_lists_peers_as_an_aligned_table() {
        let member = |name: &str, status: &str| MemberLine { id: author(), name: name.into(), status: status.into() };
        let members = [member("a-long-name", "active"), member("b", "invited")];
        let text = status_with_members(&members, Palette::new(false));
        let lines: Vec<&str> = text.lines().skip_while(|l| *l != "peers:").skip(1).take(3).collect();
        assert!(lines[0].starts_with("  NODE ID") && lines[0].ends_with("NAME         STATUS"), "{text}");
        let status_column = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("active"), Some(status_column), "{text}");
        assert_eq!(lines[2].find("invited"), Some(status_column), "{text}");
        assert!(lines[2].starts_with(&format!("  {}  b  ", members[1].id)), "{text}");
    }

    #[test]
    fn colour_only_when_asked() {
        let member = MemberLine { id: author(), name: "n".into(), status: "removed".into() };
        let plain = status_with_members(std::slice::from_ref(&member), Palette::new(false));
        assert!(!plain.contains('\x1b'), "{plain}");
        let painted = status_with_members(&[member], Palette::new(true));
        assert!(painted.contains("\x1b[31mremoved\x1b[0m") && painted.contains("\x1b[1mNODE ID\x1b[0m"), "{painted}");

        let view = PeerView::active_member(author(), vec![]);
        assert!(!peers(std::slice::from_ref(&view), Palette::new(false)).contains('\x1b'));
        assert!(peers(&[view], Palette::new(true)).contains("\x1b[32mactive\x1b[0m"));

        let hlc = lattice_core::Hlc::new(1_796_161_239_085, 0);
        let head = |value: &[u8]| Head {
            value: value.to_vec(),
            tombstone: false,
            author: author(),
            hlc,
            hash: lattice_core::Hash::of(value),
            kind: lattice_core::Kind::Register,
        };
        let two = [head(b"x"), head(b"y")];
        let plain = heads(&two, Palette::new(false));
        assert!(!plain.contains('\x1b') && plain.lines().filter(|l| l.starts_with('*')).count() == 1, "{plain}");
        assert_eq!(heads(&two, Palette::new(true)).matches("\x1b[32m*\x1b[0m").count(), 1);
    }

    #[test]
    fn heads_show_local_time_beside_the_hlc() {
        let head = Head {
            value: b"v".to_vec(),
            tombstone: false,
            author: author(),
            hlc: lattice_core::Hlc::new(1_796_161_239_085, 0),
            hash: lattice_core::Hash::of(b"v"),
            kind: lattice_core::Kind::Register,
        };
        let text = heads(std::slice::from_ref(&head), Palette::new(false));
        let at = super::super::time::hlc(head.hlc);
        assert_eq!(text, format!("* v  author {}  at {at}  hash {}\n", head.author, head.hash));
        assert!(text.contains(" (hlc 1796161239085.0)  hash "), "{text}");
    }
}
