//! No import loop in the kernel crate: a test that reads `kernels/src`, resolves every path a
//! module uses (`use` lines and inline `crate::`/`super::` paths, through `pub use` re-exports to
//! the module that defines the item) and fails on a cycle between modules (files).
//!
//! Re-exports themselves (`pub use`, `pub(crate) use`: a module's facade) and test-only modules
//! (`#[cfg(test)] mod ..;` and inline `mod tests { .. }`) are not dependencies. Module ownership
//! (`mod x;`) is not either: it is the tree, not an import.

// A static check of the source tree: nothing for Miri to find, and its isolation forbids reading
// the files.
#![cfg(not(miri))]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module (a file) of the crate, seen from its non-test source.
struct Module {
    /// `name -> path` of every item it re-exports (`pub use`, `pub(crate) use`).
    reexports: BTreeMap<String, Vec<String>>,
    /// Paths it uses (private `use` lines and inline paths), unresolved.
    uses: Vec<Vec<String>>,
    /// Submodules declared outside `#[cfg(test)]`.
    children: BTreeSet<String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The source of `file` with comments, inline test modules and `cfg(test)` module declarations
/// removed.
fn strip(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        if t == "#[cfg(test)]" {
            match lines.peek().map(|l| l.trim()) {
                // A test module: declared here (skip the line) or inline (skip to the end).
                Some(next) if next.starts_with("mod ") && next.ends_with(';') => {
                    lines.next();
                    continue;
                }
                Some(next) if next.starts_with("mod ") => break,
                _ => {}
            }
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`, `a::b as c`, `a::*`) into full paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &[String], t: &str, out: &mut Vec<Vec<String>>) {
        if let Some(open) = t.find('{') {
            let head = &t[..open];
            let inner = &t[open + 1..t.len() - 1];
            let mut p = prefix.to_vec();
            p.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
            let mut depth = 0;
            let mut start = 0;
            for (i, ch) in inner.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&p, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                go(&p, &inner[start..], out);
            }
        } else {
            let t = t.split("as").next().unwrap_or(t);
            let mut p = prefix.to_vec();
            p.extend(t.split("::").filter(|s| !s.is_empty()).map(String::from));
            if p.last().is_some_and(|s| s == "self") {
                p.pop();
            }
            out.push(p);
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

fn load() -> BTreeMap<Vec<String>, Module> {
    let root = src_dir();
    let mut modules = BTreeMap::new();
    let mut stack = vec![(root.join("lib.rs"), Vec::<String>::new())];
    while let Some((file, path)) = stack.pop() {
        let source = strip(&fs::read_to_string(&file).expect("read module"));
        let dir = if file.ends_with("lib.rs") || file.ends_with("mod.rs") {
            file.parent().expect("dir").to_path_buf()
        } else {
            file.with_extension("")
        };
        let mut m = Module {
            reexports: BTreeMap::new(),
            uses: Vec::new(),
            children: BTreeSet::new(),
        };
        // Statements: `mod x;` and `use ...;` (possibly over several lines).
        let flat = source.replace('\n', " ");
        for stmt in flat.split(';') {
            let s = stmt.trim();
            let s = s.rsplit(']').next().unwrap_or(s).trim(); // drop attributes
            let (public, rest) = if let Some(r) = s.strip_prefix("pub(crate) use ") {
                (true, Some(r))
            } else if let Some(r) = s.strip_prefix("pub use ") {
                (true, Some(r))
            } else if let Some(r) = s.strip_prefix("use ") {
                (false, Some(r))
            } else {
                (false, None)
            };
            if let Some(tree) = rest {
                for p in expand(tree) {
                    if public {
                        if let Some(name) = p.last() {
                            m.reexports.insert(name.clone(), p.clone());
                        }
                    } else {
                        m.uses.push(p);
                    }
                }
                continue;
            }
            let decl = s
                .strip_prefix("pub(crate) mod ")
                .or_else(|| s.strip_prefix("pub mod "))
                .or_else(|| s.strip_prefix("mod "));
            if let Some(name) = decl.filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
            {
                let file = [
                    dir.join(format!("{name}.rs")),
                    dir.join(name).join("mod.rs"),
                ]
                .into_iter()
                .find(|f| f.exists());
                if let Some(file) = file {
                    m.children.insert(name.to_string());
                    let mut child = path.clone();
                    child.push(name.to_string());
                    stack.push((file, child));
                }
            }
        }
        // Inline paths in code: `crate::a::b` and `super::a::b` outside `use` lines.
        for line in source
            .lines()
            .filter(|l| !l.trim_start().starts_with("use "))
        {
            for start in ["crate::", "super::"] {
                let mut rest = line;
                while let Some(i) = rest.find(start) {
                    let tail = &rest[i..];
                    let end = tail
                        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        .unwrap_or(tail.len());
                    let p: Vec<String> = tail[..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    if !line.trim_start().starts_with("pub") || !line.contains(" use ") {
                        m.uses.push(p);
                    }
                    rest = &tail[end..];
                }
            }
        }
        modules.insert(path, m);
    }
    modules
}

/// The module that defines what `path` (as written in module `from`) names.
fn resolve(
    modules: &BTreeMap<Vec<String>, Module>,
    from: &[String],
    path: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    if depth > 16 {
        return None;
    }
    let mut at: Vec<String> = from.to_vec();
    let mut segs = path.iter().peekable();
    match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            at.clear();
            segs.next();
        }
        Some("super") => {
            while segs.peek().is_some_and(|s| *s == "super") {
                at.pop();
                segs.next();
            }
        }
        Some("self") => {
            segs.next();
        }
        // A name in this module: a child module or a local/re-exported item; anything else
        // (`core`, `half`, `libm`) is outside the crate.
        Some(first) => {
            let m = modules.get(&at)?;
            if !m.children.contains(first) && !m.reexports.contains_key(first) {
                return None;
            }
        }
        None => return None,
    }
    for seg in segs {
        let m = modules.get(&at)?;
        if m.children.contains(seg) {
            at.push(seg.clone());
        } else if let Some(target) = m.reexports.get(seg) {
            let target = target.clone();
            return resolve(modules, &at, &target, depth + 1).or(Some(at));
        } else {
            return Some(at);
        }
    }
    Some(at)
}

fn edges() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = load();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (path, m) in &modules {
        let out = graph.entry(path.clone()).or_default();
        for u in &m.uses {
            if let Some(target) = resolve(&modules, path, u, 0) {
                if &target != path {
                    out.insert(target);
                }
            }
        }
    }
    graph
}

fn name(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// Every cycle the depth-first search meets, as `a -> b -> .. -> a`.
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    let mut state: BTreeMap<&Vec<String>, State> = graph.keys().map(|k| (k, State::New)).collect();
    let mut found = Vec::new();
    fn visit<'a>(
        node: &'a Vec<String>,
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<&'a Vec<String>, State>,
        stack: &mut Vec<&'a Vec<String>>,
        found: &mut Vec<String>,
    ) {
        state.insert(node, State::Open);
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(State::Done) {
                State::New => visit(next, graph, state, stack, found),
                State::Open => {
                    let at = stack.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[at..].iter().map(|n| name(n)).collect();
                    cycle.push(name(next));
                    found.push(cycle.join(" -> "));
                }
                State::Done => {}
            }
        }
        stack.pop();
        state.insert(node, State::Done);
    }
    for node in graph.keys() {
        if state.get(node) == Some(&State::New) {
            visit(node, graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn the_kernel_modules_import_one_another_without_a_loop() {
    let graph = edges();
    assert!(graph.len() > 30, "only {} modules found", graph.len());
    let edge_count: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edge_count > 50, "only {edge_count} edges found");
    let found = cycles(&graph);
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn the_loop_finder_finds_a_loop() {
    let mut graph = edges();
    let a = vec!["simd".to_string()];
    let b = vec!["optim".to_string(), "adam".to_string()];
    graph.entry(a.clone()).or_default().insert(b.clone());
    graph.entry(b).or_default().insert(a);
    assert!(!cycles(&graph).is_empty());
}
