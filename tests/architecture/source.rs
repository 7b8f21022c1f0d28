//! `src/` read as text, the way /work/notes/graph.py read it: the top-level
//! module of each file, its non-test code, and the `crate::<module>` paths
//! that code names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One `.rs` file under `src/`.
pub struct SourceFile {
    /// Relative to `src/`, with `/` separators: `config/caso.rs`.
    pub rel: String,
    pub text: String,
    /// Whether the whole file is a test module: its parent declares it
    /// under `#[cfg(test)]` (`spool/tests.rs`).
    pub is_test: bool,
}

impl SourceFile {
    /// The top-level module the file belongs to (`config` for
    /// `config/caso.rs`); `None` for `lib.rs` and the binaries.
    pub fn top_module(&self) -> Option<&str> {
        if self.rel == "lib.rs" || self.rel.starts_with("bin/") {
            return None;
        }
        let first = self.rel.split('/').next().unwrap_or(&self.rel);
        Some(first.strip_suffix(".rs").unwrap_or(first))
    }

    /// The text before a trailing `#[cfg(test)] mod tests` (all of it when
    /// there is none, nothing in a test file).
    pub fn non_test(&self) -> &str {
        if self.is_test {
            return "";
        }
        match self.text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &self.text[..i],
            None => &self.text,
        }
    }

    /// The lines of non-test code.
    pub fn non_test_lines(&self) -> usize {
        self.non_test().lines().count()
    }

    /// The other top-level modules this file's non-test, non-comment code
    /// names as `crate::<module>` (also inside `crate::{a, b::c}`).
    pub fn crate_refs(&self) -> BTreeSet<String> {
        if self.is_test {
            return BTreeSet::new();
        }
        let code: String = self
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = match code.find("#[cfg(test)]\nmod tests") {
            Some(i) => &code[..i],
            None => &code[..],
        };
        let mut out = BTreeSet::new();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            // `$crate::` and `foo_crate::` are not paths of this crate.
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(group));
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    out.insert(name.to_string());
                }
            }
        }
        if let Some(me) = self.top_module() {
            out.remove(me);
        }
        out
    }
}

/// The leading identifier of `s` (`[a-z_][a-z0-9_]*`, as module names are).
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit()))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path in a `use crate::{...}` group (text after
/// the `{`), nested groups skipped.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start && depth == 0 => {
                at_item_start = false;
                let name = ident(&group[i..]);
                if !name.is_empty() && name != "self" {
                    heads.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    heads
}

/// Every `.rs` file under `src/`, sorted by path.
pub fn files() -> Vec<SourceFile> {
    let root = src();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push(SourceFile {
                    rel,
                    text,
                    is_test: false,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    mark_test_files(&mut out);
    assert!(
        out.iter().any(|f| f.rel == "lib.rs"),
        "no src/lib.rs under {}",
        root.display()
    );
    out
}

/// Marks the files their parent module declares as `#[cfg(test)] mod
/// <name>;`: `a/b.rs` or `a/b/mod.rs` declared in `a/mod.rs` or `a.rs`.
pub fn mark_test_files(files: &mut [SourceFile]) {
    let test_files: Vec<usize> = (0..files.len())
        .filter(|&i| {
            let rel = files[i].rel.as_str();
            let module = rel
                .strip_suffix("/mod.rs")
                .or_else(|| rel.strip_suffix(".rs"));
            let Some((dir, name)) = module.and_then(|m| m.rsplit_once('/')) else {
                return false;
            };
            let decl = format!("#[cfg(test)]\nmod {name};");
            let parents = [format!("{dir}/mod.rs"), format!("{dir}.rs")];
            files
                .iter()
                .any(|p| parents.contains(&p.rel) && p.text.contains(&decl))
        })
        .collect();
    for i in test_files {
        files[i].is_test = true;
    }
}

/// Module -> (module it names -> the files that name it).
pub type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

pub fn import_graph(files: &[SourceFile]) -> Graph {
    let mut g = Graph::new();
    for f in files {
        let Some(top) = f.top_module() else { continue };
        let edges = g.entry(top.to_string()).or_default();
        for target in f.crate_refs() {
            edges.entry(target).or_default().insert(f.rel.clone());
        }
    }
    g
}

/// The strongly connected components of more than one module (Tarjan),
/// each sorted, in a stable order.
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// The `pub mod` names of `src/lib.rs`.
pub fn lib_pub_mods(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .collect()
}

/// The modules the code map of `src/lib.rs` links (`` [`name`] ``): its
/// `//!` lines from the one naming "Code map" to the next heading.
pub fn lib_code_map(lib: &str) -> Option<BTreeSet<String>> {
    let doc: Vec<&str> = lib.lines().map_while(|l| l.strip_prefix("//!")).collect();
    let start = doc.iter().position(|l| l.contains("Code map"))?;
    let mut names = BTreeSet::new();
    for line in doc[start..]
        .iter()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('#'))
        .map(|(_, l)| l)
    {
        let mut rest = *line;
        while let Some(i) = rest.find("[`") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find("`]") {
                names.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    Some(names)
}

/// The modules README.md's "## Code map" section names: in each list item,
/// split at `;` into clauses with parenthesised text removed, the
/// backticked names (`` `cli` ``, `` `extract/` ``) before a clause's first
/// `:`. What follows the `:` describes the module (its submodules, options).
pub fn readme_code_map(readme: &str) -> Option<BTreeSet<String>> {
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| l.trim() != "## Code map")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    if section.is_empty() {
        return None;
    }
    let mut items: Vec<String> = Vec::new();
    for line in section {
        if let Some(item) = line.strip_prefix("- ") {
            items.push(item.to_string());
        } else if line.starts_with(' ')
            && !line.trim().is_empty()
            && let Some(last) = items.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut names = BTreeSet::new();
    for item in &items {
        for clause in item.split(';') {
            let mut flat = String::new();
            let mut depth = 0usize;
            for c in clause.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ if depth == 0 => flat.push(c),
                    _ => {}
                }
            }
            let head = flat.split(':').next().unwrap_or("");
            for (i, part) in head.split('`').enumerate() {
                let name = part.trim_end_matches('/');
                if i % 2 == 1 && !name.is_empty() && ident(name) == name {
                    names.insert(name.to_string());
                }
            }
        }
    }
    Some(names)
}
