//! `sdk/js/icn.d.ts` against the protobuf messages it mirrors. The SDK's types are
//! written by hand, so this test is what keeps them in step with the protos, as
//! linkerd2-proxy's tests keep its checked-in generated code: change a message and this
//! test names every interface property that no longer matches.
//!
//! Every exported interface of icn.d.ts is classified, so a new one fails until someone
//! decides what it is: a mirror of the message of the same name (or the one [`ALIASES`]
//! names), an input form of a message ([`INPUT_FORMS`]), or an SDK-only helper
//! ([`SDK_ONLY`]). A mirror has, for every field of its message, a property named with
//! the field's proto3 JSON name and typed as the proto3 JSON mapping (pbjson, which the
//! REST API speaks) carries it, and no other property:
//!
//! - 64-bit integers: `Int64` (a decimal string); bytes: `Base64`;
//! - 32-bit integers, float and double: `number`; bool: `boolean`;
//! - string: `string`, or a union of string literals where the SDK knows the values;
//! - enum: a union of exactly the enum's value names, inline or through a type alias;
//! - message: an interface mirroring that message, or an inline object literal checked
//!   the same way; `Record<string, never>` for a message without fields, and
//!   `Record<string, unknown>` where [`UNTYPED`] says why;
//! - repeated: an array of the above; map: `Record<string, V>`.
//!
//! Optionality (`?`) is left to the SDK: proto3 JSON omits fields at their default value,
//! so most properties are optional, but the SDK marks as required what the gateway always
//! fills (a login's token). Oneof members are ordinary properties, as in the JSON mapping.
//!
//! icn.d.ts is read with a small parser for the subset it uses (`export interface`,
//! `export type`, object literal, union, array and generic types); classes, functions
//! and imports are skipped whole. Anything else fails the test rather than being skipped.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// Interfaces named otherwise than their message, or whose name several packages use.
const ALIASES: &[(&str, &str)] = &[
    // A bare `Event` would be a vague name among the SDK's exports.
    ("GatewayEvent", "icn.gateway.v1.Event"),
    // The gateway's own messages, which its REST routes answer with; gossip has
    // messages of the same names with the same fields.
    ("ListTopicsResponse", "icn.gateway.v1.ListTopicsResponse"),
    ("GetEntriesResponse", "icn.gateway.v1.GetEntriesResponse"),
];

/// Interfaces holding a message's fields in the forms the SDK's encoder accepts:
/// `IntegerLike` for 64-bit integers and `BytesLike` for bytes, other fields as in JSON.
const INPUT_FORMS: &[(&str, &str)] = &[("TransferInput", "icn.ledger.v1.Transfer")];

/// Interfaces that mirror no message, and why.
const SDK_ONLY: &[(&str, &str)] = &[
    ("Payment", "what `nextTransfer` pays: icn_ledger_records::Payment, a Rust struct, not a message"),
    ("ServerSentEvent", "one server-sent event as `events()` yields it; its `data` is a GatewayEvent"),
    ("EventsOptions", "options of `events()`, sent as query parameters and Last-Event-ID"),
    ("Page", "paging options, sent as the `limit` and `cursor` query parameters"),
    ("IcnClientOptions", "the client's constructor options"),
];

/// Message properties (`Interface.property`) the SDK deliberately types as
/// `Record<string, unknown>`, and why.
const UNTYPED: &[(&str, &str)] = &[("GatewayEvent.task", "icn.compute.v1.TaskEvent: the SDK has no compute API")];

/// The type aliases a JSON mirror uses for 64-bit integers and bytes: both must be strings.
const JSON_STRING_ALIASES: &[&str] = &["Int64", "Base64"];

#[test]
fn every_interface_mirroring_a_message_has_exactly_its_fields_with_their_json_types() {
    let differences = drift(&read_dts(), &Protos::built_in());
    assert!(
        differences.is_empty(),
        "sdk/js/icn.d.ts differs from the protos in {} place(s):\n{}",
        differences.len(),
        differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    );
}

/// The check itself, on a copy of icn.d.ts edited the ways it drifts in practice: a
/// property renamed, a field's type changed, an enum value forgotten, a new interface
/// nobody classified.
#[test]
fn a_renamed_property_a_wrong_type_a_missing_enum_value_and_a_new_interface_are_each_reported() {
    let edits = [
        ("  tokenId: string;", "  tokenID: string;"),
        ("  decimals?: number;\n  defaultCreditLimit", "  decimals?: Int64;\n  defaultCreditLimit"),
        (
            "  | 'TRANSFER_REJECTION_MALFORMED'\n  | 'TRANSFER_REJECTION_BAD_TIME';",
            "  | 'TRANSFER_REJECTION_MALFORMED';",
        ),
        ("// --- the client", "export interface Receipt { hash?: Base64 }\n\n// --- the client"),
    ];
    let protos = Protos::built_in();
    let original = read_dts();
    let mut source = original.clone();
    for (from, to) in edits {
        assert!(source.contains(from), "icn.d.ts no longer contains {from:?}: pick another edit for this test");
        source = source.replacen(from, to, 1);
    }
    // What icn.d.ts may differ in already is the other test's business.
    let before: BTreeSet<String> = drift(&original, &protos).iter().map(ToString::to_string).collect();
    let found: Vec<String> =
        drift(&source, &protos).iter().map(ToString::to_string).filter(|d| !before.contains(d)).collect();
    let expected = [
        "LoginResponse.tokenId: expected string, found nothing",
        "LoginResponse.tokenID: expected nothing (no such field in icn.gateway.v1.LoginResponse), found string",
        "Currency.decimals: expected number, found Int64",
        "TransferRecord.rejection: expected the value names of icn.ledger.v1.TransferRejection, \
         found TransferRejection (lacks 'TRANSFER_REJECTION_BAD_TIME')",
        "Receipt: expected a message of that name, or an entry in ALIASES, INPUT_FORMS or SDK_ONLY, \
         found an interface that mirrors nothing",
    ];
    for line in expected {
        assert!(found.iter().any(|f| f == line), "not reported: {line}\nreported:\n{}", found.join("\n"));
    }
    assert_eq!(found.len(), expected.len(), "reported:\n{}", found.join("\n"));
}

fn read_dts() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk/js/icn.d.ts");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every difference between the declarations in `source` and the messages they mirror.
fn drift(source: &str, protos: &Protos) -> Vec<Difference> {
    let decls = Parser::new(source).declarations();
    let mut out = Vec::new();
    for alias in JSON_STRING_ALIASES {
        let found = decls.aliases.get(*alias).map_or("nothing".to_string(), ToString::to_string);
        if found != "string" {
            out.push(Difference::new(format!("type {alias}"), "string", found));
        }
    }
    let mirrors = classify(&decls, protos, &mut out);
    let checker = Checker { protos, decls: &decls, mirrors: &mirrors };
    for (interface, (message, form)) in &mirrors {
        checker.check_properties(interface, message, &decls.interfaces[interface], *form, &mut out);
    }
    out
}

/// One way icn.d.ts differs from the protos.
struct Difference {
    /// `Interface.property`, with `[]` and `.` for properties of inline objects.
    at: String,
    expected: String,
    found: String,
}

impl Difference {
    fn new(at: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Difference { at: at.into(), expected: expected.into(), found: found.into() }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: expected {}, found {}", self.at, self.expected, self.found)
    }
}

/// How an interface carries its message's values.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Form {
    /// As the gateway's JSON bodies carry them.
    Json,
    /// As the SDK's encoder accepts them.
    Input,
}

impl Form {
    fn int64(self) -> &'static str {
        match self {
            Form::Json => "Int64",
            Form::Input => "IntegerLike",
        }
    }

    fn bytes(self) -> &'static str {
        match self {
            Form::Json => "Base64",
            Form::Input => "BytesLike",
        }
    }
}

/// Each interface that mirrors a message, with that message's full name and the form;
/// interfaces that cannot be classified, and stale table entries, go to `out`.
fn classify(decls: &Declarations, protos: &Protos, out: &mut Vec<Difference>) -> BTreeMap<String, (String, Form)> {
    let tables = [("ALIASES", ALIASES), ("INPUT_FORMS", INPUT_FORMS), ("SDK_ONLY", SDK_ONLY)];
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    for (table, entries) in tables {
        for (interface, _) in entries {
            if !decls.interfaces.contains_key(*interface) {
                out.push(Difference::new(*interface, format!("an interface, as {table} lists it"), "nothing"));
            }
            if let Some(other) = listed.insert(interface, table) {
                out.push(Difference::new(*interface, "one table", format!("entries in {other} and {table}")));
            }
        }
    }
    for (at, _) in UNTYPED {
        let (interface, property) = at.split_once('.').expect("UNTYPED entries read Interface.property");
        if !decls.interfaces.get(interface).is_some_and(|props| props.iter().any(|p| p.name == property)) {
            out.push(Difference::new(*at, "a property, as UNTYPED lists it", "nothing"));
        }
    }

    let mut mirrors = BTreeMap::new();
    for interface in decls.interfaces.keys() {
        let (message, form) = if listed_in(SDK_ONLY, interface).is_some() {
            continue;
        } else if let Some(message) = listed_in(INPUT_FORMS, interface) {
            (message.to_string(), Form::Input)
        } else if let Some(message) = listed_in(ALIASES, interface) {
            (message.to_string(), Form::Json)
        } else {
            match protos.top_level.get(interface).map(Vec::as_slice) {
                Some([message]) => (message.clone(), Form::Json),
                Some(several) => {
                    let expected = "one message of that name, or an entry in ALIASES";
                    out.push(Difference::new(interface, expected, format!("several: {}", several.join(", "))));
                    continue;
                }
                None => {
                    let expected = "a message of that name, or an entry in ALIASES, INPUT_FORMS or SDK_ONLY";
                    out.push(Difference::new(interface, expected, "an interface that mirrors nothing"));
                    continue;
                }
            }
        };
        if !protos.messages.contains_key(&message) {
            out.push(Difference::new(interface, format!("message {message} to exist"), "no such message"));
            continue;
        }
        mirrors.insert(interface.clone(), (message, form));
    }
    mirrors
}

/// What `table` pairs `interface` with.
fn listed_in(table: &[(&str, &'static str)], interface: &str) -> Option<&'static str> {
    table.iter().find(|(i, _)| *i == interface).map(|(_, m)| *m)
}

/// The messages and enums of every ICN package, by full name without the leading dot.
struct Protos {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, BTreeSet<String>>,
    /// Full names of the top-level messages, by simple name.
    top_level: BTreeMap<String, Vec<String>>,
}

impl Protos {
    /// The descriptor set the gateway itself is built with.
    fn built_in() -> Self {
        let set =
            FileDescriptorSet::decode(icn_proto::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes");
        let mut protos = Protos { messages: BTreeMap::new(), enums: BTreeMap::new(), top_level: BTreeMap::new() };
        for file in &set.file {
            let package = file.package();
            for m in &file.message_type {
                protos.top_level.entry(m.name().to_string()).or_default().push(format!("{package}.{}", m.name()));
                protos.add_message(package, m);
            }
            protos.add_enums(package, &file.enum_type);
        }
        protos
    }

    fn add_message(&mut self, scope: &str, m: &DescriptorProto) {
        let name = format!("{scope}.{}", m.name());
        for nested in &m.nested_type {
            self.add_message(&name, nested);
        }
        self.add_enums(&name, &m.enum_type);
        self.messages.insert(name, m.clone());
    }

    fn add_enums(&mut self, scope: &str, enums: &[prost_types::EnumDescriptorProto]) {
        for e in enums {
            let names = e.value.iter().map(|v| v.name().to_string()).collect();
            self.enums.insert(format!("{scope}.{}", e.name()), names);
        }
    }
}

/// A field's type name (`.icn.net.v1.Peer`) as the maps of [`Protos`] key it.
fn type_name(field: &FieldDescriptorProto) -> &str {
    field.type_name().trim_start_matches('.')
}

fn json_name(field: &FieldDescriptorProto) -> &str {
    field.json_name.as_deref().expect("protoc fills json_name in the descriptor set")
}

struct Checker<'a> {
    protos: &'a Protos,
    decls: &'a Declarations,
    mirrors: &'a BTreeMap<String, (String, Form)>,
}

impl Checker<'_> {
    /// `props` (the properties of an interface or inline object at `at`) against the
    /// fields of `message`.
    fn check_properties(&self, at: &str, message: &str, props: &[Prop], form: Form, out: &mut Vec<Difference>) {
        let fields = &self.protos.messages[message].field;
        let mut seen = BTreeSet::new();
        for prop in props {
            let here = format!("{at}.{}", prop.name);
            if !seen.insert(prop.name.as_str()) {
                out.push(Difference::new(here, "one property of that name", "it twice"));
                continue;
            }
            match fields.iter().find(|f| json_name(f) == prop.name) {
                Some(field) => self.check_field(&here, field, &prop.ty, form, out),
                None => {
                    let expected = format!("nothing (no such field in {message})");
                    out.push(Difference::new(here, expected, prop.ty.to_string()));
                }
            }
        }
        for field in fields.iter().filter(|f| !seen.contains(json_name(f))) {
            out.push(Difference::new(format!("{at}.{}", json_name(field)), self.expected(field, form), "nothing"));
        }
    }

    fn check_field(&self, at: &str, field: &FieldDescriptorProto, ty: &Ty, form: Form, out: &mut Vec<Difference>) {
        let mismatch = || Difference::new(at, self.expected(field, form), ty.to_string());
        if let Some(entry) = self.map_entry(field) {
            match ty {
                Ty::Named(name, args) if name == "Record" && args.len() == 2 && args[0] == Ty::named("string") => {
                    self.check_value(&format!("{at}[key]"), &entry.field[1], &args[1], form, out)
                }
                _ => out.push(mismatch()),
            }
        } else if field.label() == Label::Repeated {
            match ty {
                Ty::Array(element) => self.check_value(&format!("{at}[]"), field, element, form, out),
                _ => out.push(mismatch()),
            }
        } else {
            self.check_value(at, field, ty, form, out);
        }
    }

    /// One value of `field` (an element, for a repeated field).
    fn check_value(&self, at: &str, field: &FieldDescriptorProto, ty: &Ty, form: Form, out: &mut Vec<Difference>) {
        let matches = match field.r#type() {
            Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
                *ty == Ty::named(form.int64())
            }
            Type::Bytes => *ty == Ty::named(form.bytes()),
            Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 | Type::Float | Type::Double => {
                *ty == Ty::named("number")
            }
            Type::Bool => *ty == Ty::named("boolean"),
            Type::String => *ty == Ty::named("string") || self.literals(ty).is_some(),
            Type::Enum => {
                let names = &self.protos.enums[type_name(field)];
                match self.literals(ty) {
                    Some(found) if found != *names => {
                        let found = format!("{ty} ({})", enum_drift(names, &found));
                        out.push(Difference::new(at, self.expected_value(field, form), found));
                        return;
                    }
                    found => found.is_some(),
                }
            }
            Type::Message | Type::Group => {
                let message = type_name(field);
                let no_fields = self.protos.messages[message].field.is_empty();
                match ty {
                    Ty::Object(props) => return self.check_properties(at, message, props, form, out),
                    Ty::Named(name, args) if args.is_empty() => {
                        self.mirrors.get(name).is_some_and(|(m, f)| m == message && *f == form)
                    }
                    Ty::Named(name, args) if name == "Record" && args.len() == 2 && args[0] == Ty::named("string") => {
                        (no_fields && args[1] == Ty::named("never"))
                            || (args[1] == Ty::named("unknown") && UNTYPED.iter().any(|(a, _)| *a == at))
                    }
                    _ => false,
                }
            }
        };
        if !matches {
            out.push(Difference::new(at, self.expected_value(field, form), ty.to_string()));
        }
    }

    /// What a property for `field` should be typed, as a person reads it.
    fn expected(&self, field: &FieldDescriptorProto, form: Form) -> String {
        if let Some(entry) = self.map_entry(field) {
            format!("Record<string, {}>", self.expected_value(&entry.field[1], form))
        } else if field.label() == Label::Repeated {
            format!("{}[]", self.expected_value(field, form))
        } else {
            self.expected_value(field, form)
        }
    }

    fn expected_value(&self, field: &FieldDescriptorProto, form: Form) -> String {
        match field.r#type() {
            Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => form.int64().into(),
            Type::Bytes => form.bytes().into(),
            Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 | Type::Float | Type::Double => {
                "number".into()
            }
            Type::Bool => "boolean".into(),
            Type::String => "string".into(),
            Type::Enum => format!("the value names of {}", type_name(field)),
            Type::Message | Type::Group => {
                let message = type_name(field);
                let mirror = self.mirrors.iter().find(|(_, m)| m.0 == message && m.1 == form).map(|(i, _)| i);
                match mirror {
                    Some(interface) => format!("{interface} or an object literal of {message}'s fields"),
                    None => format!("an object literal of {message}'s fields"),
                }
            }
        }
    }

    /// The entry message of a map field.
    fn map_entry(&self, field: &FieldDescriptorProto) -> Option<&DescriptorProto> {
        if field.r#type() != Type::Message {
            return None;
        }
        let message = &self.protos.messages[type_name(field)];
        message.options.as_ref().is_some_and(|o| o.map_entry()).then_some(message)
    }

    /// The string literals `ty` is a union of, through type aliases; `None` for any
    /// other type.
    fn literals(&self, ty: &Ty) -> Option<BTreeSet<String>> {
        match self.decls.resolve(ty) {
            Ty::Literal(s) => Some(BTreeSet::from([s.clone()])),
            Ty::Union(parts) => parts.iter().map(|p| self.literals(p)).try_fold(BTreeSet::new(), |mut all, part| {
                all.extend(part?);
                Some(all)
            }),
            _ => None,
        }
    }
}

/// An enum's value names the SDK lacks and those it has in excess.
fn enum_drift(expected: &BTreeSet<String>, found: &BTreeSet<String>) -> String {
    let quoted = |names: Vec<&String>| names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let lacks = expected.difference(found).collect::<Vec<_>>();
    let extra = found.difference(expected).collect::<Vec<_>>();
    let mut parts = Vec::new();
    if !lacks.is_empty() {
        parts.push(format!("lacks {}", quoted(lacks)));
    }
    if !extra.is_empty() {
        parts.push(format!("has extra {}", quoted(extra)));
    }
    parts.join("; ")
}

/// The declarations of icn.d.ts this test reads.
struct Declarations {
    interfaces: BTreeMap<String, Vec<Prop>>,
    /// `export type Name = Type`.
    aliases: BTreeMap<String, Ty>,
}

impl Declarations {
    /// `ty` with type aliases replaced by what they stand for.
    fn resolve<'a>(&'a self, mut ty: &'a Ty) -> &'a Ty {
        while let Ty::Named(name, args) = ty {
            match self.aliases.get(name) {
                Some(aliased) if args.is_empty() => ty = aliased,
                _ => break,
            }
        }
        ty
    }
}

#[derive(Clone, PartialEq, Debug)]
struct Prop {
    name: String,
    ty: Ty,
}

/// A TypeScript type, in the subset icn.d.ts uses.
#[derive(Clone, PartialEq, Debug)]
enum Ty {
    /// `string`, `Int64`, `Record<string, never>`.
    Named(String, Vec<Ty>),
    /// `'SERVING_STATUS_SERVING'`.
    Literal(String),
    /// `{ name?: string; status?: ServingStatus }`, optionality dropped (see the module doc).
    Object(Vec<Prop>),
    Array(Box<Ty>),
    Union(Vec<Ty>),
}

impl Ty {
    fn named(name: &str) -> Ty {
        Ty::Named(name.to_string(), Vec::new())
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Named(name, args) if args.is_empty() => write!(f, "{name}"),
            Ty::Named(name, args) => {
                write!(f, "{name}<{}>", args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            }
            Ty::Literal(s) => write!(f, "'{s}'"),
            Ty::Object(props) => {
                let props = props.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect::<Vec<_>>();
                write!(f, "{{ {} }}", props.join("; "))
            }
            Ty::Array(element) if matches!(**element, Ty::Union(_)) => write!(f, "({element})[]"),
            Ty::Array(element) => write!(f, "{element}[]"),
            Ty::Union(parts) => write!(f, "{}", parts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")),
        }
    }
}

#[derive(Clone, PartialEq, Debug)]
enum Token {
    /// An identifier or keyword.
    Word(String),
    /// A string literal's value.
    Str(String),
    Punct(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "`{w}`"),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Punct(p) => write!(f, "`{p}`"),
        }
    }
}

/// `=>` before `=`, so arrows are one token.
const PUNCTUATION: &[&str] = &["=>", "{", "}", "(", ")", "[", "]", "<", ">", ";", ":", ",", "|", "&", "?", "=", "."];

/// A strict reader of icn.d.ts: what it does not know fails with the line, so a
/// construct it would misread is never silently skipped.
struct Parser {
    /// Each token with its line.
    tokens: Vec<(Token, usize)>,
    next: usize,
}

impl Parser {
    fn new(source: &str) -> Self {
        let mut tokens = Vec::new();
        let mut line = 1;
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if c == '\n' {
                line += 1;
                rest = &rest[1..];
            } else if c.is_whitespace() {
                rest = &rest[c.len_utf8()..];
            } else if let Some(comment) = rest.strip_prefix("//") {
                rest = comment.find('\n').map_or("", |end| &comment[end..]);
            } else if let Some(comment) = rest.strip_prefix("/*") {
                let end = comment.find("*/").unwrap_or_else(|| panic!("icn.d.ts:{line}: unterminated comment"));
                line += comment[..end].matches('\n').count();
                rest = &comment[end + 2..];
            } else if c == '\'' || c == '"' {
                let end = rest[1..].find(c).unwrap_or_else(|| panic!("icn.d.ts:{line}: unterminated string"));
                let value = &rest[1..1 + end];
                assert!(!value.contains(['\\', '\n']), "icn.d.ts:{line}: escapes in strings are not supported");
                tokens.push((Token::Str(value.to_string()), line));
                rest = &rest[end + 2..];
            } else if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                let end =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
                tokens.push((Token::Word(rest[..end].to_string()), line));
                rest = &rest[end..];
            } else if let Some(p) = PUNCTUATION.iter().find(|p| rest.starts_with(**p)) {
                tokens.push((Token::Punct(p), line));
                rest = &rest[p.len()..];
            } else {
                panic!("icn.d.ts:{line}: unexpected character {c:?}");
            }
        }
        Parser { tokens, next: 0 }
    }

    fn declarations(mut self) -> Declarations {
        let mut decls = Declarations { interfaces: BTreeMap::new(), aliases: BTreeMap::new() };
        while self.next < self.tokens.len() {
            if self.eat_word("import") {
                self.skip_to_semicolon();
                continue;
            }
            self.expect_word("export");
            if self.eat_word("type") {
                let name = self.word();
                self.expect("=");
                let ty = self.ty();
                self.expect(";");
                if decls.aliases.insert(name.clone(), ty).is_some() {
                    self.fail(&format!("one declaration of type {name}"));
                }
            } else if self.eat_word("interface") {
                let name = self.word();
                self.expect("{");
                let props = self.members();
                if decls.interfaces.insert(name.clone(), props).is_some() {
                    self.fail(&format!("one declaration of interface {name}"));
                }
            } else if self.eat_word("class") {
                // The SDK's API, not a body: skipped up to the end of its body.
                while !self.eat("{") {
                    self.advance();
                }
                self.skip_to_close();
            } else if self.eat_word("function") || self.eat_word("const") {
                // Helpers and constants: not messages.
                self.skip_to_semicolon();
            } else {
                self.fail("`type`, `interface`, `class`, `function` or `const` after `export`");
            }
        }
        decls
    }

    /// Properties up to and including the closing `}`.
    fn members(&mut self) -> Vec<Prop> {
        let mut props = Vec::new();
        while !self.eat("}") {
            let name = match self.peek() {
                Some(Token::Word(w) | Token::Str(w)) => w.clone(),
                _ => self.fail("a property name"),
            };
            self.next += 1;
            self.eat("?");
            self.expect(":");
            let ty = self.ty();
            if !self.eat(";") && !self.eat(",") && self.peek() != Some(&Token::Punct("}")) {
                self.fail("`;`, `,` or `}` after a property");
            }
            props.push(Prop { name, ty });
        }
        props
    }

    fn ty(&mut self) -> Ty {
        // Unions spread over lines start with `|`.
        self.eat("|");
        let mut parts = vec![self.array_ty()];
        while self.eat("|") {
            parts.push(self.array_ty());
        }
        if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            Ty::Union(parts)
        }
    }

    fn array_ty(&mut self) -> Ty {
        let token = match self.peek() {
            Some(token @ (Token::Str(_) | Token::Word(_) | Token::Punct("{" | "("))) => token.clone(),
            _ => self.fail("a type"),
        };
        self.next += 1;
        let mut ty = match token {
            Token::Str(s) => Ty::Literal(s),
            Token::Punct("{") => Ty::Object(self.members()),
            Token::Punct("(") => {
                let ty = self.ty();
                self.expect(")");
                ty
            }
            Token::Word(name) => {
                let mut args = Vec::new();
                if self.eat("<") {
                    args.push(self.ty());
                    while self.eat(",") {
                        args.push(self.ty());
                    }
                    self.expect(">");
                }
                Ty::Named(name, args)
            }
            _ => unreachable!("only the tokens matched above start a type"),
        };
        while self.eat("[") {
            self.expect("]");
            ty = Ty::Array(Box::new(ty));
        }
        ty
    }

    fn skip_to_semicolon(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.advance() {
                Token::Punct("{" | "(" | "[") => depth += 1,
                Token::Punct("}" | ")" | "]") => depth -= 1,
                Token::Punct(";") if depth == 0 => return,
                _ => {}
            }
        }
    }

    /// Past the `}` closing the `{` just read.
    fn skip_to_close(&mut self) {
        let mut depth = 1usize;
        while depth > 0 {
            match self.advance() {
                Token::Punct("{") => depth += 1,
                Token::Punct("}") => depth -= 1,
                _ => {}
            }
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(t, _)| t)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().cloned().unwrap_or_else(|| self.fail("more"));
        self.next += 1;
        token
    }

    fn eat(&mut self, punct: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Punct(p)) if *p == punct);
        self.next += usize::from(found);
        found
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w == word);
        self.next += usize::from(found);
        found
    }

    fn expect(&mut self, punct: &str) {
        if !self.eat(punct) {
            self.fail(&format!("`{punct}`"));
        }
    }

    fn expect_word(&mut self, word: &str) {
        if !self.eat_word(word) {
            self.fail(&format!("`{word}`"));
        }
    }

    fn word(&mut self) -> String {
        match self.peek() {
            Some(Token::Word(w)) => {
                let w = w.clone();
                self.next += 1;
                w
            }
            _ => self.fail("a name"),
        }
    }

    /// Fails at the token not yet read.
    fn fail(&self, expected: &str) -> ! {
        match self.tokens.get(self.next) {
            Some((token, line)) => panic!("icn.d.ts:{line}: expected {expected}, found {token}"),
            None => panic!("icn.d.ts: expected {expected}, found the end"),
        }
    }
}
