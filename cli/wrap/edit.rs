//! The text edit behind `wrap-config`: a concrete-syntax edit of one client file.
//!
//! jsonc-parser gives the byte range of every node; thoth replaces only the ranges of
//! the `command` and `args` values it wraps (and inserts `args`, or an `env` key with
//! `--embed-api-key`, where none existed). Every other byte — comments, whitespace,
//! key order, unknown keys, the `env` block, the line endings — stays as it was. New
//! text follows the file's own layout (one property per line when the neighbours are,
//! a multi-line `args` array when the original was) and is strict JSON, so a strict
//! client gets strict JSON back.
//!
//! This module is pure (text in, text out) and never panics on any input: a file that
//! does not parse is an error naming its line and column, and nothing is edited.

use std::collections::BTreeMap;

use jsonc_parser::ast::{Array, Object, ObjectProp, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};
use serde::{Deserialize, Serialize};

use super::clients::{Client, Dialect};

/// Why a file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

/// How [`Doc::unique`] errors start (see [`EditError::is_duplicate_key`]).
const DUPLICATE_KEY: &str = "duplicate key";

impl EditError {
    /// A duplicated key the client reads one way and thoth another: the file may run
    /// a server ungoverned, which `health` treats as a failure, not a warning.
    pub fn is_duplicate_key(&self) -> bool {
        self.0.starts_with(DUPLICATE_KEY)
    }
}

/// What wrapping writes into each stdio entry.
#[derive(Debug, Clone)]
pub struct WrapSpec {
    /// thoth's stable path.
    pub thoth: String,
    /// Flags after `run --agent-id <name>`, e.g. `["--tenant-id", "acme"]`.
    pub flags: Vec<String>,
    /// The API key for the entry's `env` (`--embed-api-key` only).
    pub embed_api_key: Option<String>,
}

/// What an entry was before thoth wrapped it (kept in the wrap record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// The `command` value's text, exactly as it was.
    pub command: String,
    /// The `args` value's text, or `None` when the entry had no `args`.
    pub args: Option<String>,
    /// What `--embed-api-key` added to `env`, so a restore takes it out again.
    #[serde(default)]
    pub env_added: EnvAdded,
}

/// What `--embed-api-key` added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvAdded {
    #[default]
    Nothing,
    /// A `THOTH_API_KEY` member in an existing `env`.
    Key,
    /// The whole `env` member.
    EnvObject,
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EntryOutcome {
    /// A stdio entry, now wrapped.
    Wrapped,
    /// Already wrapped with these flags: the entry is left as it is.
    AlreadyWrapped,
    /// Already wrapped with other flags (or thoth path): re-wrapped with the new ones
    /// around the original command.
    Rewrapped,
    /// A remote (http/sse) server: left alone.
    Remote,
    /// Left alone, for this reason.
    Skipped { reason: String },
    /// Unwrapped back to its original command (restore).
    Restored,
}

/// One server entry and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryReport {
    /// Where the entry lives, e.g. `["mcpServers", "github"]`.
    pub path: Vec<String>,
    #[serde(flatten)]
    pub outcome: EntryOutcome,
}

impl EntryReport {
    /// The server's name (the last element of its path).
    pub fn name(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or("")
    }
}

/// The result of wrapping one file's text.
#[derive(Debug, Clone)]
pub struct Wrapped {
    pub text: String,
    pub entries: Vec<EntryReport>,
    /// The originals of the entries wrapped now, keyed by [`entry_key`].
    pub originals: BTreeMap<String, Original>,
}

/// The key of an entry in a wrap record.
pub fn entry_key(path: &[String]) -> String {
    serde_json::to_string(path).unwrap_or_default()
}

/// Checks that `text` parses in the client's dialect; the error names line and column.
pub fn check(text: &str, dialect: Dialect) -> Result<(), EditError> {
    Doc::parse(text, dialect).map(|_| ())
}

/// Wraps every stdio entry of `text`. Entries already wrapped keep the original
/// recorded in `known` (when there is one) and are re-wrapped with `spec`.
pub fn wrap(
    text: &str,
    client: Client,
    spec: &WrapSpec,
    known: &BTreeMap<String, Original>,
) -> Result<Wrapped, EditError> {
    let doc = Doc::parse(text, client.dialect())?;
    let mut edits = Vec::new();
    let mut entries = Vec::new();
    let mut originals = BTreeMap::new();
    for entry in doc.entries(client)? {
        let outcome = match classify(entry.value) {
            Class::Remote => EntryOutcome::Remote,
            Class::Skip(reason) => EntryOutcome::Skipped { reason },
            Class::Stdio(cmd) => {
                let (program, args) = match cmd.wrapped_original() {
                    Some(original) => original,
                    None => (cmd.program.clone(), cmd.args.clone()),
                };
                let already = cmd.is_wrapped();
                let key = entry_key(&entry.path);
                let first_edit = edits.len();
                let env_added = doc.wrap_edits(&cmd, &entry, spec, &program, &args, &mut edits);
                let changes = edits
                    .get(first_edit..)
                    .unwrap_or_default()
                    .iter()
                    .any(|e| text.get(e.start..e.end) != Some(e.text.as_str()));
                if !already {
                    originals.insert(
                        key,
                        Original {
                            command: doc.slice(cmd.command_range),
                            args: cmd.args_range.map(|r| doc.slice(r)),
                            env_added,
                        },
                    );
                } else if let Some(known) = known.get(&key) {
                    originals.insert(key, known.clone());
                }
                if already && changes {
                    EntryOutcome::Rewrapped
                } else if already {
                    EntryOutcome::AlreadyWrapped
                } else {
                    EntryOutcome::Wrapped
                }
            }
        };
        entries.push(EntryReport {
            path: entry.path.clone(),
            outcome,
        });
    }
    let text = doc.apply(edits)?;
    Doc::parse(&text, client.dialect()).map_err(|e| {
        EditError(format!(
            "internal error: the wrapped text does not parse: {e}"
        ))
    })?;
    Ok(Wrapped {
        text,
        entries,
        originals,
    })
}

/// Unwraps every wrapped entry in place: from its recorded original text when `known`
/// has it, else from the command after `--`. Everything else in the file is kept.
pub fn unwrap(
    text: &str,
    client: Client,
    known: &BTreeMap<String, Original>,
) -> Result<(String, Vec<EntryReport>), EditError> {
    let doc = Doc::parse(text, client.dialect())?;
    let mut edits = Vec::new();
    let mut entries = Vec::new();
    for entry in doc.entries(client)? {
        let Class::Stdio(cmd) = classify(entry.value) else {
            continue;
        };
        let Some((program, args)) = cmd.wrapped_original() else {
            continue;
        };
        let original = known
            .get(&entry_key(&entry.path))
            .cloned()
            .unwrap_or(Original {
                command: json_string(&program),
                args: Some(inline_array(&args)),
                env_added: EnvAdded::Nothing,
            });
        edits.push(Edit::replace(cmd.command_range, original.command.clone()));
        match (&original.args, cmd.args_prop) {
            (Some(args), Some(_)) => {
                if let Some(r) = cmd.args_range {
                    edits.push(Edit::replace(r, args.clone()));
                }
            }
            (None, Some(prop)) => edits.extend(doc.remove_prop(cmd.holder, prop)),
            (Some(args), None) => {
                edits.push(doc.insert_after(cmd.command_prop, &format!("\"args\": {args}")))
            }
            (None, None) => {}
        }
        if let Some(env) = cmd.env_prop {
            match original.env_added {
                EnvAdded::EnvObject => edits.extend(doc.remove_prop(cmd.holder, env)),
                EnvAdded::Key => {
                    if let Value::Object(obj) = &env.value
                        && let Some(key) = find_prop(obj, "THOTH_API_KEY")
                    {
                        edits.extend(doc.remove_prop(obj, key));
                    }
                }
                EnvAdded::Nothing => {}
            }
        }
        entries.push(EntryReport {
            path: entry.path.clone(),
            outcome: EntryOutcome::Restored,
        });
    }
    let text = doc.apply(edits)?;
    Doc::parse(&text, client.dialect()).map_err(|e| {
        EditError(format!(
            "internal error: the restored text does not parse: {e}"
        ))
    })?;
    Ok((text, entries))
}

/// Counts per kind of entry, without editing (for `status` and `health`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Survey {
    pub wrapped: usize,
    pub unwrapped: usize,
    pub remote: usize,
    pub skipped: usize,
}

impl Survey {
    pub fn total(&self) -> usize {
        self.wrapped + self.unwrapped + self.remote + self.skipped
    }
}

/// Classifies every entry of `text`.
pub fn survey(text: &str, client: Client) -> Result<Survey, EditError> {
    let doc = Doc::parse(text, client.dialect())?;
    let mut s = Survey::default();
    for entry in doc.entries(client)? {
        match classify(entry.value) {
            Class::Remote => s.remote += 1,
            Class::Skip(_) => s.skipped += 1,
            Class::Stdio(cmd) if cmd.is_wrapped() => s.wrapped += 1,
            Class::Stdio(_) => s.unwrapped += 1,
        }
    }
    Ok(s)
}

/// A wrapped entry as its client would start it: what `health` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedEntry {
    /// The server's name (the last element of the entry's path).
    pub name: String,
    /// The `command`: the thoth the client starts.
    pub thoth: String,
    /// The whole `args`, from `run` to the server's own arguments.
    pub args: Vec<String>,
    /// The entry's `env` members with string values (the client adds them to thoth's
    /// environment).
    pub env: Vec<(String, String)>,
}

/// Every wrapped entry of a client file.
pub fn wrapped_entries(text: &str, client: Client) -> Result<Vec<WrappedEntry>, EditError> {
    let doc = Doc::parse(text, client.dialect())?;
    let mut found = Vec::new();
    for entry in doc.entries(client)? {
        let Class::Stdio(cmd) = classify(entry.value) else {
            continue;
        };
        if !cmd.is_wrapped() {
            continue;
        }
        let env = match cmd.env_prop.map(|p| &p.value) {
            Some(Value::Object(env)) => env
                .properties
                .iter()
                .filter_map(|p| match &p.value {
                    Value::StringLit(v) => Some((p.name.as_str().to_string(), v.value.to_string())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        found.push(WrappedEntry {
            name: entry.path.last().cloned().unwrap_or_default(),
            thoth: cmd.program.clone(),
            args: cmd.args.clone(),
            env,
        });
    }
    Ok(found)
}

/// One server entry: its path and its value.
struct ServerEntry<'d, 'a> {
    path: Vec<String>,
    value: &'d Value<'a>,
}

/// The parsed file with its text.
struct Doc<'a> {
    text: &'a str,
    /// Bytes before the JSON text (a UTF-8 byte order mark), kept as they are.
    prefix: &'a str,
    root: Option<Value<'a>>,
    newline: &'static str,
}

impl<'a> Doc<'a> {
    fn parse(full: &'a str, dialect: Dialect) -> Result<Self, EditError> {
        let (prefix, text) = match full.strip_prefix('\u{feff}') {
            Some(rest) => (&full[..3], rest),
            None => ("", full),
        };
        let jsonc = dialect == Dialect::Jsonc;
        let options = ParseOptions {
            allow_comments: jsonc,
            allow_loose_object_property_names: false,
            allow_trailing_commas: jsonc,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let parsed = parse_to_ast(text, &CollectOptions::default(), &options)
            .map_err(|e| EditError(e.to_string()))?;
        if let Some(root) = &parsed.value
            && !matches!(root, Value::Object(_))
        {
            return Err(EditError(
                "the file is not a JSON object at the top level".into(),
            ));
        }
        Ok(Self {
            text,
            prefix,
            root: parsed.value,
            newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
        })
    }

    fn slice(&self, r: jsonc_parser::common::Range) -> String {
        self.text
            .get(r.start..r.end)
            .unwrap_or_default()
            .to_string()
    }

    /// Every server entry of the client's containers, in file order. A duplicated
    /// key on the way to an entry or inside one is an error: the client reads only
    /// one of them (usually the last), so wrapping the other would leave the server
    /// it actually runs ungoverned while reporting it wrapped.
    fn entries(&self, client: Client) -> Result<Vec<ServerEntry<'_, 'a>>, EditError> {
        let Some(Value::Object(root)) = &self.root else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let key = client.servers_key();
        self.unique(root, &[key, "projects"], "the top level")?;
        self.collect(root, &[], key, &mut out)?;
        if client == Client::ClaudeCode
            && let Some(Value::Object(projects)) = find_prop(root, "projects").map(|p| &p.value)
        {
            self.unique(projects, &[], "projects")?;
            for project in &projects.properties {
                if let Value::Object(obj) = &project.value {
                    let base = ["projects".to_string(), prop_name(project)];
                    self.unique(obj, &[key], &base.join("/"))?;
                    self.collect(obj, &base, key, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Adds the entries of `obj[key]` (an object of servers) to `out`.
    fn collect<'d>(
        &self,
        obj: &'d Object<'a>,
        base: &[String],
        key: &str,
        out: &mut Vec<ServerEntry<'d, 'a>>,
    ) -> Result<(), EditError> {
        let Some(Value::Object(servers)) = find_prop(obj, key).map(|p| &p.value) else {
            return Ok(());
        };
        let mut where_ = base.to_vec();
        where_.push(key.to_string());
        self.unique(servers, &[], &where_.join("/"))?;
        for server in &servers.properties {
            let mut path = where_.clone();
            path.push(prop_name(server));
            if let Value::Object(entry) = &server.value {
                self.unique(entry, &[], &path.join("/"))?;
                if let Some(Value::Object(command)) = find_prop(entry, "command").map(|p| &p.value)
                {
                    self.unique(command, &[], &format!("{}/command", path.join("/")))?;
                }
            }
            out.push(ServerEntry {
                path,
                value: &server.value,
            });
        }
        Ok(())
    }

    /// Refuses a key that appears twice in `obj` (only the keys in `only`, if any).
    fn unique(&self, obj: &Object<'a>, only: &[&str], where_: &str) -> Result<(), EditError> {
        for (i, prop) in obj.properties.iter().enumerate() {
            let name = prop.name.as_str();
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            if obj
                .properties
                .iter()
                .skip(i + 1)
                .any(|p| p.name.as_str() == name)
            {
                let before = self.text.get(..prop.range.start).unwrap_or_default();
                let line = before.matches('\n').count() + 1;
                return Err(EditError(format!(
                    "{DUPLICATE_KEY} {name:?} in {where_} (line {line}): the client reads only one of them; remove the other"
                )));
            }
        }
        Ok(())
    }

    /// The edits that wrap one stdio entry around `program args…`.
    fn wrap_edits(
        &self,
        cmd: &ServerCommand<'_, 'a>,
        entry: &ServerEntry<'_, 'a>,
        spec: &WrapSpec,
        program: &str,
        args: &[String],
        edits: &mut Vec<Edit>,
    ) -> EnvAdded {
        let mut new_args = vec![
            "run".to_string(),
            "--agent-id".to_string(),
            entry
                .path
                .last()
                .cloned()
                .unwrap_or_else(|| "mcp-server".into()),
        ];
        new_args.extend(spec.flags.iter().cloned());
        new_args.push("--".into());
        new_args.push(program.to_string());
        new_args.extend(args.iter().cloned());

        edits.push(Edit::replace(cmd.command_range, json_string(&spec.thoth)));
        let mut tail = String::new();
        match (cmd.args_prop, cmd.args_array) {
            (Some(_), Some(array)) => {
                edits.push(Edit::replace(
                    array.range,
                    self.format_array(&new_args, Some(array)),
                ));
            }
            _ => tail.push_str(&format!("\"args\": {}", inline_array(&new_args))),
        }
        let mut env_added = EnvAdded::Nothing;
        if let Some(key) = &spec.embed_api_key {
            let member = format!("\"THOTH_API_KEY\": {}", json_string(key));
            match cmd.env_prop.map(|p| &p.value) {
                Some(Value::Object(env)) => match find_prop(env, "THOTH_API_KEY") {
                    Some(existing) => {
                        edits.push(Edit::replace(existing.value.range(), json_string(key)));
                    }
                    None => {
                        edits.push(self.insert_into(env, &member));
                        env_added = EnvAdded::Key;
                    }
                },
                _ => {
                    let env = format!("\"env\": {{{member}}}");
                    if tail.is_empty() {
                        if let Some(args_prop) = cmd.args_prop {
                            edits.push(self.insert_after(args_prop, &env));
                        }
                    } else {
                        tail = format!("{tail}{}{env}", self.separator_after(cmd.command_prop));
                    }
                    env_added = EnvAdded::EnvObject;
                }
            }
        }
        if !tail.is_empty() {
            edits.push(self.insert_after(cmd.command_prop, &tail));
        }
        env_added
    }

    /// `items` as an array laid out like `like` (multi-line when it was).
    fn format_array(&self, items: &[String], like: Option<&Array<'a>>) -> String {
        let Some(like) = like else {
            return inline_array(items);
        };
        let original = self.slice(like.range);
        let Some(first) = like.elements.first() else {
            return inline_array(items);
        };
        if !original.contains('\n') {
            return inline_array(items);
        }
        let item_indent = self.line_indent(first.range().start);
        let close_indent = self.line_indent(like.range.end.saturating_sub(1));
        let nl = self.newline;
        let body: Vec<String> = items
            .iter()
            .map(|s| format!("{item_indent}{}", json_string(s)))
            .collect();
        format!("[{nl}{}{nl}{close_indent}]", body.join(&format!(",{nl}")))
    }

    /// The whitespace that starts the line holding byte `at`, if only whitespace
    /// precedes `at` on that line.
    fn line_indent(&self, at: usize) -> String {
        let before = self.text.get(..at).unwrap_or_default();
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let lead = before.get(line_start..).unwrap_or_default();
        if lead.chars().all(|c| c == ' ' || c == '\t') {
            lead.to_string()
        } else {
            lead.chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect()
        }
    }

    /// `,` plus what separates properties around `prop`: a new line at the same
    /// indent when `prop` starts its own line, else a space.
    fn separator_after(&self, prop: &ObjectProp<'a>) -> String {
        let before = self.text.get(..prop.range.start).unwrap_or_default();
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let lead = before.get(line_start..).unwrap_or_default();
        if before.contains('\n') && lead.chars().all(|c| c == ' ' || c == '\t') {
            format!(",{}{lead}", self.newline)
        } else {
            ", ".to_string()
        }
    }

    fn insert_after(&self, prop: &ObjectProp<'a>, member: &str) -> Edit {
        Edit {
            start: prop.range.end,
            end: prop.range.end,
            text: format!("{}{member}", self.separator_after(prop)),
        }
    }

    /// Adds `member` as the last property of `obj`.
    fn insert_into(&self, obj: &Object<'a>, member: &str) -> Edit {
        match obj.properties.last() {
            Some(last) => self.insert_after(last, member),
            // Right after `{`: whatever was inside the empty object stays.
            None => Edit {
                start: obj.range.start + 1,
                end: obj.range.start + 1,
                text: member.to_string(),
            },
        }
    }

    /// Removes `prop` from `obj` with the separator that came with it.
    /// (`None` when `prop` is not one of `obj`'s: nothing is removed then.)
    fn remove_prop(&self, obj: &Object<'a>, prop: &ObjectProp<'a>) -> Option<Edit> {
        let index = obj.properties.iter().position(|p| p.range == prop.range)?;
        Some(
            if let Some(previous) = index.checked_sub(1).and_then(|i| obj.properties.get(i)) {
                Edit::replace(
                    jsonc_parser::common::Range::new(previous.range.end, prop.range.end),
                    String::new(),
                )
            } else if let Some(next) = obj.properties.get(index + 1) {
                Edit::replace(
                    jsonc_parser::common::Range::new(prop.range.start, next.range.start),
                    String::new(),
                )
            } else {
                // The only member: just its own bytes go.
                Edit::replace(prop.range, String::new())
            },
        )
    }

    /// Applies non-overlapping edits.
    fn apply(&self, mut edits: Vec<Edit>) -> Result<String, EditError> {
        edits.sort_by_key(|e| std::cmp::Reverse((e.start, e.end)));
        let mut out = self.text.to_string();
        let mut limit = usize::MAX;
        for edit in edits {
            if edit.end > limit || edit.start > edit.end || edit.end > out.len() {
                return Err(EditError("internal error: overlapping edits".into()));
            }
            if !out.is_char_boundary(edit.start) || !out.is_char_boundary(edit.end) {
                return Err(EditError("internal error: edit inside a character".into()));
            }
            out.replace_range(edit.start..edit.end, &edit.text);
            limit = edit.start;
        }
        Ok(format!("{}{out}", self.prefix))
    }
}

fn prop_name(prop: &ObjectProp<'_>) -> String {
    prop.name.as_str().to_string()
}

fn find_prop<'d, 'a>(obj: &'d Object<'a>, name: &str) -> Option<&'d ObjectProp<'a>> {
    obj.properties.iter().find(|p| p.name.as_str() == name)
}

/// A stdio entry's command: where its pieces are and what they say.
struct ServerCommand<'d, 'a> {
    /// The object holding `command`/`args` (the entry, or Zed's command object).
    holder: &'d Object<'a>,
    command_prop: &'d ObjectProp<'a>,
    command_range: jsonc_parser::common::Range,
    program: String,
    args_prop: Option<&'d ObjectProp<'a>>,
    args_array: Option<&'d Array<'a>>,
    args_range: Option<jsonc_parser::common::Range>,
    args: Vec<String>,
    env_prop: Option<&'d ObjectProp<'a>>,
}

impl ServerCommand<'_, '_> {
    /// thoth's binary + `run` + … `--`.
    fn is_wrapped(&self) -> bool {
        self.wrapped_original().is_some()
    }

    /// The original program and arguments of a wrapped entry (after `--`).
    fn wrapped_original(&self) -> Option<(String, Vec<String>)> {
        if !is_thoth(&self.program) || self.args.first().map(String::as_str) != Some("run") {
            return None;
        }
        // Every flag thoth writes takes a value, so a value that happens to be `--`
        // is not mistaken for the separator.
        let mut i = 1;
        while let Some(arg) = self.args.get(i) {
            if arg == "--" {
                let program = self.args.get(i + 1)?.clone();
                return Some((program, self.args.get(i + 2..).unwrap_or_default().to_vec()));
            }
            i += if arg.starts_with("--") && !arg.contains('=') {
                2
            } else {
                1
            };
        }
        None
    }
}

/// Whether a command names thoth (any directory; `thoth` or `thoth.exe`).
pub fn is_thoth(program: &str) -> bool {
    let base = program.rsplit(['/', '\\']).next().unwrap_or(program);
    base.eq_ignore_ascii_case("thoth") || base.eq_ignore_ascii_case("thoth.exe")
}

enum Class<'d, 'a> {
    Stdio(ServerCommand<'d, 'a>),
    Remote,
    Skip(String),
}

fn classify<'d, 'a>(value: &'d Value<'a>) -> Class<'d, 'a> {
    let Value::Object(entry) = value else {
        return Class::Skip("the entry is not an object".into());
    };
    let is_remote_type = find_prop(entry, "type").is_some_and(|p| {
        matches!(&p.value, Value::StringLit(s)
            if matches!(s.value.to_ascii_lowercase().as_str(), "http" | "sse" | "streamable-http" | "streamablehttp"))
    });
    if is_remote_type
        || ["url", "serverUrl", "httpUrl"]
            .iter()
            .any(|k| find_prop(entry, k).is_some())
    {
        return Class::Remote;
    }
    let Some(command_prop) = find_prop(entry, "command") else {
        return Class::Skip("no command (an extension or remote server)".into());
    };
    // Zed: "command": {"path": …, "args": […], "env": {…}}.
    let (holder, command_prop) = match &command_prop.value {
        Value::Object(inner) => match find_prop(inner, "path") {
            Some(path) => (inner, path),
            None => return Class::Skip("command object has no path".into()),
        },
        _ => (entry, command_prop),
    };
    let Value::StringLit(program) = &command_prop.value else {
        return Class::Skip("command is not a string".into());
    };
    if program.value.trim().is_empty() {
        return Class::Skip("command is empty".into());
    }
    let env_prop = find_prop(holder, "env");
    if env_prop.is_some_and(|p| !matches!(p.value, Value::Object(_))) {
        return Class::Skip("env is not an object".into());
    }
    let args_prop = find_prop(holder, "args");
    let (args_array, args) = match args_prop.map(|p| &p.value) {
        None => (None, Vec::new()),
        Some(Value::Array(array)) => {
            let mut args = Vec::new();
            for element in &array.elements {
                match element {
                    Value::StringLit(s) => args.push(s.value.to_string()),
                    _ => return Class::Skip("args holds a value that is not a string".into()),
                }
            }
            (Some(array), args)
        }
        Some(_) => return Class::Skip("args is not an array".into()),
    };
    Class::Stdio(ServerCommand {
        holder,
        command_prop,
        command_range: program.range,
        program: program.value.to_string(),
        args_prop,
        args_array,
        args_range: args_array.map(|a| a.range),
        args,
        env_prop,
    })
}

/// One replacement of `start..end` by `text`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

impl Edit {
    fn replace(r: jsonc_parser::common::Range, text: String) -> Self {
        Self {
            start: r.start,
            end: r.end,
            text,
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn inline_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WrapSpec {
        WrapSpec {
            thoth: "/usr/local/bin/thoth".into(),
            flags: vec!["--tenant-id".into(), "acme".into()],
            embed_api_key: None,
        }
    }

    fn wrap_text(text: &str, client: Client) -> Wrapped {
        wrap(text, client, &spec(), &BTreeMap::new()).expect("wraps")
    }

    #[test]
    fn wraps_only_command_and_args() {
        let text = "{\n  \"mcpServers\": {\n    \"fs\": {\n      \"command\": \"npx\",\n      \"args\": [\"-y\", \"@mcp/fs\", \"/tmp\"],\n      \"env\": {\"TOKEN\": \"s3cret\"}\n    }\n  },\n  \"other\": 1\n}\n";
        let w = wrap_text(text, Client::ClaudeDesktop);
        assert_eq!(
            w.text,
            "{\n  \"mcpServers\": {\n    \"fs\": {\n      \"command\": \"/usr/local/bin/thoth\",\n      \"args\": [\"run\", \"--agent-id\", \"fs\", \"--tenant-id\", \"acme\", \"--\", \"npx\", \"-y\", \"@mcp/fs\", \"/tmp\"],\n      \"env\": {\"TOKEN\": \"s3cret\"}\n    }\n  },\n  \"other\": 1\n}\n"
        );
        assert_eq!(w.entries[0].outcome, EntryOutcome::Wrapped);
        let original = w.originals.values().next().expect("recorded");
        assert_eq!(original.command, "\"npx\"");
        assert_eq!(
            original.args.as_deref(),
            Some("[\"-y\", \"@mcp/fs\", \"/tmp\"]")
        );
    }

    #[test]
    fn wrapping_twice_equals_wrapping_once() {
        let text = "{\"mcpServers\": {\"a\": {\"command\": \"uvx\"}, \"b\": {\"command\": \"node\", \"args\": [\"s.js\"]}}}";
        let once = wrap_text(text, Client::Cursor);
        let twice = wrap(&once.text, Client::Cursor, &spec(), &once.originals).expect("wraps");
        assert_eq!(once.text, twice.text);
        assert!(
            twice
                .entries
                .iter()
                .all(|e| e.outcome == EntryOutcome::AlreadyWrapped)
        );
        assert_eq!(twice.originals, once.originals);
    }

    #[test]
    fn missing_args_are_inserted_and_removed_again() {
        let text =
            "{\n  \"mcpServers\": {\n    \"a\": {\n      \"command\": \"uvx\"\n    }\n  }\n}";
        let w = wrap_text(text, Client::Cursor);
        assert!(
            w.text
                .contains("\"command\": \"/usr/local/bin/thoth\",\n      \"args\": [\"run\""),
            "{}",
            w.text
        );
        let (back, restored) = unwrap(&w.text, Client::Cursor, &w.originals).expect("unwraps");
        assert_eq!(back, text);
        assert_eq!(restored.len(), 1);
    }

    #[test]
    fn unwrap_without_record_uses_the_command_after_the_separator() {
        let text = r#"{"mcpServers": {"a": {"command": "/opt/thoth", "args": ["run", "--agent-id", "--", "--", "npx", "-y", "x"]}}}"#;
        let (back, _) = unwrap(text, Client::Cursor, &BTreeMap::new()).expect("unwraps");
        assert_eq!(
            back,
            r#"{"mcpServers": {"a": {"command": "npx", "args": ["-y", "x"]}}}"#
        );
    }

    #[test]
    fn remote_and_commandless_entries_are_left_alone() {
        let text = r#"{"mcpServers": {"r1": {"url": "https://x"}, "r2": {"type": "sse", "command": "x"}, "r3": {"serverUrl": "https://y"}, "r4": {"httpUrl": "https://z"}, "n": {"env": {}}, "bad": {"command": "x", "args": "y"}}}"#;
        let w = wrap_text(text, Client::Windsurf);
        assert_eq!(w.text, text);
        let outcomes: Vec<_> = w.entries.iter().map(|e| e.outcome.clone()).collect();
        assert_eq!(
            outcomes[..4],
            [
                EntryOutcome::Remote,
                EntryOutcome::Remote,
                EntryOutcome::Remote,
                EntryOutcome::Remote
            ]
        );
        assert!(matches!(outcomes[4], EntryOutcome::Skipped { .. }));
        assert!(matches!(outcomes[5], EntryOutcome::Skipped { .. }));
    }

    #[test]
    fn zed_command_object_and_trailing_commas() {
        let text = "// Zed\n{\n  \"context_servers\": {\n    \"pg\": {\n      \"command\": {\n        \"path\": \"/usr/bin/pg-mcp\",\n        \"args\": [],\n        \"env\": {},\n      },\n    },\n    \"ext\": {\"source\": \"extension\", \"settings\": {},},\n  },\n}\n";
        let w = wrap_text(text, Client::Zed);
        assert!(w.text.starts_with("// Zed\n"));
        assert!(w.text.contains("\"path\": \"/usr/local/bin/thoth\""));
        assert!(w.text.contains("\"--\", \"/usr/bin/pg-mcp\"]"));
        assert!(w.text.contains("\"env\": {},\n      },"));
        assert_eq!(
            w.entries[1].outcome,
            EntryOutcome::Skipped {
                reason: "no command (an extension or remote server)".into()
            }
        );
        let (back, _) = unwrap(&w.text, Client::Zed, &w.originals).expect("unwraps");
        assert_eq!(back, text);
    }

    #[test]
    fn claude_code_project_servers() {
        let text = r#"{"mcpServers": {"g": {"type": "stdio", "command": "gh-mcp"}}, "projects": {"/src/a": {"mcpServers": {"db": {"command": "db-mcp", "args": []}}, "history": []}}}"#;
        let w = wrap_text(text, Client::ClaudeCode);
        let paths: Vec<_> = w.entries.iter().map(|e| e.path.join("/")).collect();
        assert_eq!(paths, ["mcpServers/g", "projects//src/a/mcpServers/db"]);
        assert!(w.entries.iter().all(|e| e.outcome == EntryOutcome::Wrapped));
    }

    #[test]
    fn multi_line_args_keep_their_layout_and_crlf() {
        let text = "{\r\n  \"servers\": {\r\n    \"x\": {\r\n      \"command\": \"node\",\r\n      \"args\": [\r\n        \"a.js\" // main\r\n      ]\r\n    }\r\n  }\r\n}\r\n";
        let w = wrap_text(text, Client::VsCode);
        assert!(
            w.text
                .contains("\"args\": [\r\n        \"run\",\r\n        \"--agent-id\",\r\n"),
            "{}",
            w.text
        );
        assert!(w.text.contains("        \"a.js\"\r\n      ]"));
        let (back, _) = unwrap(&w.text, Client::VsCode, &w.originals).expect("unwraps");
        assert_eq!(back, text);
    }

    #[test]
    fn embedded_key_goes_to_env_and_comes_out_again() {
        let mut s = spec();
        s.embed_api_key = Some("k-123".into());
        for text in [
            r#"{"mcpServers": {"a": {"command": "x", "args": ["1"], "env": {"A": "b"}}}}"#,
            r#"{"mcpServers": {"a": {"command": "x", "args": ["1"]}}}"#,
            r#"{"mcpServers": {"a": {"command": "x"}}}"#,
            r#"{"mcpServers": {"a": {"command": "x", "env": {}}}}"#,
            "{\"mcpServers\": {\"a\": {\"command\": \"x\", \"env\": { \n }}}}",
        ] {
            let w = wrap(text, Client::Cursor, &s, &BTreeMap::new()).expect("wraps");
            let v: serde_json::Value = serde_json::from_str(&w.text).expect("strict JSON");
            let entry = &v["mcpServers"]["a"];
            assert_eq!(entry["env"]["THOTH_API_KEY"], "k-123", "{}", w.text);
            assert!(!entry["args"].to_string().contains("k-123"));
            let (back, _) = unwrap(&w.text, Client::Cursor, &w.originals).expect("unwraps");
            assert_eq!(back, text);
        }
    }

    #[test]
    fn bad_files_name_line_and_column() {
        let err = check("{\n  \"a\": 1,\n}", Dialect::Json).expect_err("trailing comma");
        assert!(
            err.0.contains("line 2") || err.0.contains("line 3"),
            "{err}"
        );
        assert!(check("{// c\n}", Dialect::Json).is_err());
        assert!(check("{// c\n}", Dialect::Jsonc).is_ok());
        assert!(check("[1]", Dialect::Json).is_err());
        assert!(check("", Dialect::Json).is_ok());
    }

    #[test]
    fn duplicated_keys_are_refused() {
        for text in [
            r#"{"mcpServers": {"a": {"command": "x", "command": "evil"}}}"#,
            r#"{"mcpServers": {"a": {"command": "x"}, "a": {"command": "evil"}}}"#,
            r#"{"mcpServers": {"a": {"command": "x"}}, "mcpServers": {"b": {"command": "evil"}}}"#,
            r#"{"mcpServers": {"a": {"command": "x", "args": [], "args": ["evil"]}}}"#,
        ] {
            let err = wrap(text, Client::Cursor, &spec(), &BTreeMap::new()).expect_err(text);
            assert!(err.is_duplicate_key(), "{err}");
            assert!(survey(text, Client::Cursor).is_err());
        }
        let bad_env = r#"{"mcpServers": {"a": {"command": "x", "env": []}}}"#;
        let w = wrap(bad_env, Client::Cursor, &spec(), &BTreeMap::new()).expect("wraps");
        assert_eq!(w.text, bad_env);
        assert!(matches!(w.entries[0].outcome, EntryOutcome::Skipped { .. }));
        let zed = r#"{"context_servers": {"a": {"command": {"path": "x", "path": "evil"}}}}"#;
        assert!(wrap(zed, Client::Zed, &spec(), &BTreeMap::new()).is_err());
        // Duplicates elsewhere do not matter to wrapping.
        let other = r#"{"theme": 1, "theme": 2, "mcpServers": {"a": {"command": "x"}}}"#;
        assert!(wrap(other, Client::Cursor, &spec(), &BTreeMap::new()).is_ok());
    }

    #[test]
    fn thoth_names() {
        assert!(is_thoth("/usr/local/bin/thoth"));
        assert!(is_thoth(r"C:\Program Files\Thoth\thoth.exe"));
        assert!(!is_thoth("/usr/bin/thoth-helper"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn spec() -> WrapSpec {
        WrapSpec {
            thoth: "/opt/thoth/bin/thoth".into(),
            flags: vec!["--tenant-id".into(), "acme".into()],
            embed_api_key: None,
        }
    }

    /// A server entry: command, optional args, optional env, and whether it is remote.
    fn entry() -> impl Strategy<Value = Value> {
        let text = "[ -~\u{e9}\u{1F600}\\\\\"]{0,12}";
        (
            "[a-z]{1,8}",
            proptest::option::of(proptest::collection::vec(text, 0..4)),
            proptest::option::of(("[A-Z_]{1,6}", text)),
            any::<bool>(),
        )
            .prop_map(|(command, args, env, remote)| {
                if remote {
                    return json!({"url": format!("https://{command}.example")});
                }
                let mut e = serde_json::Map::new();
                e.insert("command".into(), json!(command));
                if let Some(args) = args {
                    e.insert("args".into(), json!(args));
                }
                if let Some((k, v)) = env {
                    e.insert("env".into(), json!({ k: v }));
                }
                Value::Object(e)
            })
    }

    fn config() -> impl Strategy<Value = (Value, bool)> {
        (
            proptest::collection::btree_map("[a-zA-Z0-9 _.-]{1,10}", entry(), 0..5),
            any::<bool>(),
        )
            .prop_map(|(servers, pretty)| {
                (
                    json!({"mcpServers": servers, "keep": [1, {"x": null}]}),
                    pretty,
                )
            })
    }

    fn render(v: &Value, pretty: bool) -> String {
        if pretty {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.to_string()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn wrap_is_idempotent_reversible_and_exact((value, pretty) in config()) {
            let text = render(&value, pretty);
            let once = wrap(&text, Client::Cursor, &spec(), &BTreeMap::new()).expect("wraps");
            let parsed: Value = serde_json::from_str(&once.text).expect("strict JSON out");
            prop_assert_eq!(&parsed["keep"], &value["keep"]);
            for (name, original) in value["mcpServers"].as_object().into_iter().flatten() {
                let wrapped = &parsed["mcpServers"][name];
                if original.get("url").is_some() {
                    prop_assert_eq!(wrapped, original);
                    continue;
                }
                let mut want = vec![json!("run"), json!("--agent-id"), json!(name), json!("--tenant-id"), json!("acme"), json!("--"), original["command"].clone()];
                want.extend(original["args"].as_array().cloned().unwrap_or_default());
                prop_assert_eq!(&wrapped["command"], &json!("/opt/thoth/bin/thoth"));
                prop_assert_eq!(&wrapped["args"], &Value::Array(want));
                prop_assert_eq!(&wrapped["env"], &original["env"]);
            }
            let twice = wrap(&once.text, Client::Cursor, &spec(), &once.originals).expect("wraps");
            prop_assert_eq!(&twice.text, &once.text);
            let (back, _) = unwrap(&once.text, Client::Cursor, &once.originals).expect("unwraps");
            prop_assert_eq!(&back, &text);
            // Without the record: the same values, args always present.
            let (semantic, _) = unwrap(&once.text, Client::Cursor, &BTreeMap::new()).expect("unwraps");
            let semantic: Value = serde_json::from_str(&semantic).expect("json");
            for (name, original) in value["mcpServers"].as_object().into_iter().flatten() {
                prop_assert_eq!(&semantic["mcpServers"][name]["command"], &original["command"]);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}", jsonc in any::<bool>()) {
            let client = if jsonc { Client::Zed } else { Client::ClaudeDesktop };
            if let Ok(w) = wrap(&text, client, &spec(), &BTreeMap::new()) {
                prop_assert!(check(&w.text, client.dialect()).is_ok());
                let _ = unwrap(&w.text, client, &w.originals);
            }
            let _ = survey(&text, client);
        }
    }
}
