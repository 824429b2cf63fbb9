//! Argument and variable values, checked against the schema's input types
//! before async-graphql sees them, so that a client hears about every bad
//! value at once, once, with a message a form can show next to the field.
//!
//! async-graphql's validation stops at the first bad field of an input
//! object (`createAnime(input: {…})` with three bad fields reports one),
//! reports a bad `limit` or `perPage` twice (the rule, then the complexity
//! computation that parses the argument again, with another code), and
//! leaves a required variable that was not sent to execution, as a field
//! error ("Variable limit is not defined."). Here instead:
//!
//! - [`check_document`], once per parsed document: every argument literal
//!   in every operation and fragment (directives included) and every
//!   variable default, against its type. One `BAD_USER_INPUT` error per
//!   bad value, `extensions.argument` naming it by a dotted path into the
//!   value (`input.year`, `input.genres.2`).
//! - [`check_variables`], per request, for the operation that runs: a
//!   required variable that was not sent (`Variable "$limit" of required
//!   type "Int!" was not provided.`), a null where none is allowed, and
//!   every wrong value anywhere inside a variable (`extensions.variable`,
//!   a dotted path from the variable's name). A nullable variable that was
//!   not sent and only feeds positions with a default gets that default,
//!   as the GraphQL specification says (async-graphql would pass null and
//!   refuse it).
//!
//! Scalars are checked as the specification defines them: `Int` is a
//! 32-bit integer (async-graphql accepts any 64-bit integer at validation
//! and fails at execution, naming no argument), `Float` any number, `ID` a
//! string or an integer; enums also take their value as a string, as
//! async-graphql does. The input types are read once from the schema's
//! own SDL. Anything these checks do not know (unknown fields, arguments,
//! types, custom scalars; a variable used but not declared) is left to
//! async-graphql's validation, which reports it. A request with bad
//! values is refused before that validation runs, so its other findings
//! (an unknown field, say) come with the next attempt.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Display};
use std::sync::LazyLock;

use async_graphql::parser::types::{
    BaseType, Directive, ExecutableDocument, InputValueDefinition, OperationDefinition,
    OperationType, Selection, SelectionSet, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Name, Pos, Positioned, ServerError, Value as ConstValue};
use async_graphql_value::Value;
use serde_json::{Map, Number, Value as Json};

use super::document::selected_operation;
use crate::error::code;

/// Characters of a client's value echoed back in a message at most.
const MAX_ECHO: usize = 40;

/// The input side of the schema, read from its SDL on first use.
static INPUT_TYPES: LazyLock<InputTypes> =
    LazyLock::new(|| InputTypes::from_sdl(&super::type_system_sdl()));

/// What the checks need to know about the schema.
#[derive(Default)]
struct InputTypes {
    /// The root types of queries, mutations and subscriptions.
    query: String,
    mutation: Option<String>,
    subscription: Option<String>,
    /// Object and interface types: each field's arguments and the named
    /// type it returns.
    outputs: HashMap<String, HashMap<String, OutputField>>,
    /// Input object types and their fields.
    inputs: HashMap<String, Vec<InputValue>>,
    /// Enum types and their values.
    enums: HashMap<String, Vec<String>>,
    /// Directives and their arguments.
    directives: HashMap<String, Vec<InputValue>>,
}

struct OutputField {
    args: Vec<InputValue>,
    /// The named type under any list and non-null wrappers.
    named_type: String,
}

/// An argument or an input object field.
struct InputValue {
    name: String,
    ty: Type,
    default: Option<ConstValue>,
}

impl InputTypes {
    /// The model of `sdl`; empty (every check passes) if it does not parse,
    /// which a unit test rules out.
    fn from_sdl(sdl: &str) -> Self {
        let Ok(document) = async_graphql::parser::parse_schema(sdl) else {
            return Self::default();
        };
        let input_values = |values: &[Positioned<InputValueDefinition>]| {
            values
                .iter()
                .map(|value| InputValue {
                    name: value.node.name.node.to_string(),
                    ty: value.node.ty.node.clone(),
                    default: value.node.default_value.as_ref().map(|d| d.node.clone()),
                })
                .collect::<Vec<_>>()
        };
        let mut model = Self {
            query: "Query".to_owned(),
            ..Self::default()
        };
        let mut has_schema_block = false;
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    if let Some(query) = schema.query {
                        model.query = query.node.to_string();
                    }
                    model.mutation = schema.mutation.map(|m| m.node.to_string());
                    model.subscription = schema.subscription.map(|s| s.node.to_string());
                    has_schema_block = true;
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let name = ty.name.node.to_string();
                    let fields = match ty.kind {
                        TypeKind::Object(object) => object.fields,
                        TypeKind::Interface(interface) => interface.fields,
                        TypeKind::InputObject(input) => {
                            model.inputs.insert(name, input_values(&input.fields));
                            continue;
                        }
                        TypeKind::Enum(enumeration) => {
                            let values = enumeration
                                .values
                                .iter()
                                .map(|v| v.node.value.node.to_string())
                                .collect();
                            model.enums.insert(name, values);
                            continue;
                        }
                        TypeKind::Scalar | TypeKind::Union(_) => continue,
                    };
                    let fields = fields
                        .iter()
                        .map(|field| {
                            (
                                field.node.name.node.to_string(),
                                OutputField {
                                    args: input_values(&field.node.arguments),
                                    named_type: named_type(&field.node.ty.node).to_owned(),
                                },
                            )
                        })
                        .collect();
                    model.outputs.insert(name, fields);
                }
                TypeSystemDefinition::Directive(directive) => {
                    model.directives.insert(
                        directive.node.name.node.to_string(),
                        input_values(&directive.node.arguments),
                    );
                }
            }
        }
        // Without a schema block the roots have their default names.
        if !has_schema_block {
            let named = |name: &str| model.outputs.contains_key(name).then(|| name.to_owned());
            model.mutation = named("Mutation");
            model.subscription = named("Subscription");
        }
        model
    }

    fn root(&self, ty: OperationType) -> Option<&str> {
        match ty {
            OperationType::Query => Some(&self.query),
            OperationType::Mutation => self.mutation.as_deref(),
            OperationType::Subscription => self.subscription.as_deref(),
        }
    }

    fn field(&self, parent: Option<&str>, name: &str) -> Option<&OutputField> {
        self.outputs.get(parent?)?.get(name)
    }
}

fn named_type(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(item) => named_type(item),
    }
}

/// Where a problem sits inside a value: `input`, `input.year`,
/// `input.genres.2`. Rendered only when there is a problem to report.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn is_root(&self) -> bool {
        matches!(self, Path::Root(_))
    }
}

impl Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, index) => write!(f, "{parent}.{index}"),
        }
    }
}

/// One bad value: where, and what is wrong with it.
struct Problem {
    path: String,
    is_root: bool,
    what: String,
}

/// A value to check: a literal of the document, a default, or a
/// variable's JSON.
trait Input: Display + Sized {
    fn view(&self) -> View<'_, Self>;
}

enum View<'a, T> {
    Null,
    /// A variable inside a literal: checked where it is declared.
    Variable,
    Number(&'a Number),
    String(&'a str),
    Boolean,
    Enum(&'a str),
    List(&'a [T]),
    Object(Vec<(&'a str, &'a T)>),
    /// Bytes of an upload: its scalar decides.
    Other,
}

impl Input for Value {
    fn view(&self) -> View<'_, Self> {
        match self {
            Value::Variable(_) => View::Variable,
            Value::Null => View::Null,
            Value::Number(n) => View::Number(n),
            Value::String(s) => View::String(s),
            Value::Boolean(_) => View::Boolean,
            Value::Enum(e) => View::Enum(e),
            Value::List(items) => View::List(items),
            Value::Object(fields) => {
                View::Object(fields.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
            Value::Binary(_) => View::Other,
        }
    }
}

impl Input for ConstValue {
    fn view(&self) -> View<'_, Self> {
        match self {
            ConstValue::Null => View::Null,
            ConstValue::Number(n) => View::Number(n),
            ConstValue::String(s) => View::String(s),
            ConstValue::Boolean(_) => View::Boolean,
            ConstValue::Enum(e) => View::Enum(e),
            ConstValue::List(items) => View::List(items),
            ConstValue::Object(fields) => {
                View::Object(fields.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
            ConstValue::Binary(_) => View::Other,
        }
    }
}

impl Input for Json {
    fn view(&self) -> View<'_, Self> {
        match self {
            Json::Null => View::Null,
            Json::Bool(_) => View::Boolean,
            Json::Number(n) => View::Number(n),
            Json::String(s) => View::String(s),
            Json::Array(items) => View::List(items),
            Json::Object(fields) => {
                View::Object(fields.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
        }
    }
}

/// `value` as the client wrote it, cut to [`MAX_ECHO`] characters.
fn echo(value: &impl Display) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl InputTypes {
    /// Every problem of `value` as a value of type `ty`.
    fn check<T: Input>(&self, ty: &Type, value: &T, path: Path<'_>, out: &mut Vec<Problem>) {
        let view = value.view();
        match view {
            View::Variable | View::Other => return,
            View::Null if ty.nullable => return,
            View::Null => {
                report(out, path, format!("expected type \"{ty}\", found null"));
                return;
            }
            _ => {}
        }
        let name = match &ty.base {
            BaseType::List(item) => {
                match view {
                    View::List(items) => {
                        for (index, item_value) in items.iter().enumerate() {
                            self.check(item, item_value, Path::Index(&path, index), out);
                        }
                    }
                    // One value stands for a list of one.
                    _ => self.check(item, value, path, out),
                }
                return;
            }
            BaseType::Named(name) => name.as_str(),
        };
        if let Some(fields) = self.inputs.get(name) {
            let View::Object(entries) = view else {
                report(
                    out,
                    path,
                    format!("expected type \"{ty}\", found {}", echo(value)),
                );
                return;
            };
            for field in fields {
                match entries.iter().find(|(key, _)| *key == field.name) {
                    Some((_, field_value)) => {
                        self.check(
                            &field.ty,
                            *field_value,
                            Path::Field(&path, &field.name),
                            out,
                        );
                    }
                    None if !field.ty.nullable && field.default.is_none() => report(
                        out,
                        Path::Field(&path, &field.name),
                        format!("required field of type \"{}\" was not provided", field.ty),
                    ),
                    None => {}
                }
            }
            for (key, _) in &entries {
                if !fields.iter().any(|field| field.name == *key) {
                    report(
                        out,
                        Path::Field(&path, key),
                        format!("type \"{name}\" has no field \"{key}\""),
                    );
                }
            }
            return;
        }
        if let Some(values) = self.enums.get(name) {
            let is_valid = match view {
                View::Enum(v) | View::String(v) => values.iter().any(|known| known == v),
                _ => false,
            };
            if !is_valid {
                report(
                    out,
                    path,
                    format!(
                        "expected type \"{ty}\" (one of {}), found {}",
                        values.join(", "),
                        echo(value)
                    ),
                );
            }
            return;
        }
        let is_valid = match (name, &view) {
            ("Int", View::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            ("Float", View::Number(_)) | ("String", View::String(_)) => true,
            ("Boolean", View::Boolean) | ("ID", View::String(_)) => true,
            ("ID", View::Number(n)) => n.is_i64(),
            ("Int" | "Float" | "String" | "Boolean" | "ID", _) => false,
            // A custom scalar: its own parser decides.
            _ => true,
        };
        if !is_valid {
            let range = match (name, &view) {
                ("Int", View::Number(n)) if n.is_i64() || n.is_u64() => {
                    ", outside the 32-bit range of Int"
                }
                _ => "",
            };
            report(
                out,
                path,
                format!("expected type \"{ty}\", found {}{range}", echo(value)),
            );
        }
    }
}

fn report(out: &mut Vec<Problem>, path: Path<'_>, what: String) {
    out.push(Problem {
        path: path.to_string(),
        is_root: path.is_root(),
        what,
    });
}

/// A `BAD_USER_INPUT` error at `pos` naming the value by `key`
/// (`argument` or `variable`) and `path`.
fn bad_input(message: String, pos: Pos, key: &str, path: &str) -> ServerError {
    let mut error = ServerError::new(message, Some(pos));
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", code::BAD_USER_INPUT);
    extensions.set(key, path);
    error
}

/// `<subject> has an invalid value[ at "<path>"]: <what>.`
fn problem_message(subject: &str, problem: &Problem) -> String {
    if problem.is_root {
        format!("{subject} has an invalid value: {}.", problem.what)
    } else {
        format!(
            "{subject} has an invalid value at \"{}\": {}.",
            problem.path, problem.what
        )
    }
}

/// Every argument literal and variable default of `document` that does not
/// fit its type, as `BAD_USER_INPUT` errors in document order (empty when
/// all fit).
pub fn check_document(document: &ExecutableDocument) -> Vec<ServerError> {
    let types = &*INPUT_TYPES;
    let mut errors = Vec::new();
    for (_, operation) in document.operations.iter() {
        let operation = &operation.node;
        for definition in &operation.variable_definitions {
            let definition = &definition.node;
            let Some(default) = &definition.default_value else {
                continue;
            };
            let name = definition.name.node.as_str();
            let mut problems = Vec::new();
            types.check(
                &definition.var_type.node,
                &default.node,
                Path::Root(name),
                &mut problems,
            );
            for problem in problems {
                let message = if problem.is_root {
                    format!(
                        "Variable \"${name}\" has an invalid default value: {}.",
                        problem.what
                    )
                } else {
                    format!(
                        "Variable \"${name}\" has an invalid default value at \"{}\": {}.",
                        problem.path, problem.what
                    )
                };
                errors.push(bad_input(message, default.pos, "variable", &problem.path));
            }
        }
        let root = types.root(operation.ty);
        check_directives(types, &operation.directives, &mut errors);
        check_selection_set(types, root, &operation.selection_set.node, &mut errors);
    }
    for fragment in document.fragments.values() {
        let fragment = &fragment.node;
        check_directives(types, &fragment.directives, &mut errors);
        let on = fragment.type_condition.node.on.node.as_str();
        check_selection_set(types, Some(on), &fragment.selection_set.node, &mut errors);
    }
    // Operations and fragments come out of hash maps.
    errors.sort_by_key(|error| error.locations.first().map(|pos| (pos.line, pos.column)));
    errors
}

fn check_selection_set(
    types: &InputTypes,
    parent: Option<&str>,
    set: &SelectionSet,
    errors: &mut Vec<ServerError>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                check_directives(types, &field.directives, errors);
                let definition = types.field(parent, &field.name.node);
                if let Some(definition) = definition {
                    check_arguments(types, &definition.args, &field.arguments, None, errors);
                }
                check_selection_set(
                    types,
                    definition.map(|d| d.named_type.as_str()),
                    &field.selection_set.node,
                    errors,
                );
            }
            Selection::InlineFragment(fragment) => {
                let fragment = &fragment.node;
                check_directives(types, &fragment.directives, errors);
                let on = fragment
                    .type_condition
                    .as_ref()
                    .map_or(parent, |condition| Some(condition.node.on.node.as_str()));
                check_selection_set(types, on, &fragment.selection_set.node, errors);
            }
            Selection::FragmentSpread(spread) => {
                check_directives(types, &spread.node.directives, errors);
            }
        }
    }
}

fn check_directives(
    types: &InputTypes,
    directives: &[Positioned<Directive>],
    errors: &mut Vec<ServerError>,
) {
    for directive in directives {
        let name = directive.node.name.node.as_str();
        if let Some(args) = types.directives.get(name) {
            check_arguments(types, args, &directive.node.arguments, Some(name), errors);
        }
    }
}

fn check_arguments(
    types: &InputTypes,
    definitions: &[InputValue],
    arguments: &[(Positioned<Name>, Positioned<Value>)],
    directive: Option<&str>,
    errors: &mut Vec<ServerError>,
) {
    for (name, value) in arguments {
        let Some(definition) = definitions.iter().find(|d| d.name == name.node.as_str()) else {
            continue;
        };
        let mut problems = Vec::new();
        types.check(
            &definition.ty,
            &value.node,
            Path::Root(&definition.name),
            &mut problems,
        );
        for problem in problems {
            let subject = match directive {
                Some(directive) => {
                    format!(
                        "Argument \"{}\" of directive \"@{directive}\"",
                        definition.name
                    )
                }
                None => format!("Argument \"{}\"", definition.name),
            };
            errors.push(bad_input(
                problem_message(&subject, &problem),
                value.pos,
                "argument",
                &problem.path,
            ));
        }
    }
}

/// Checks the variables of the operation `operation_name` selects in
/// `document` (nothing when it selects none: async-graphql reports that):
/// a required variable not sent, a null where none is allowed, every wrong
/// value inside each variable. A nullable variable that was not sent and
/// feeds only positions with one same default is set to that default.
pub fn check_variables(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &mut Map<String, Json>,
) -> Result<(), Vec<ServerError>> {
    let Some(operation) = selected_operation(document, operation_name) else {
        return Ok(());
    };
    let types = &*INPUT_TYPES;
    let mut errors = Vec::new();
    // Nullable variables without a value (not sent, or null), whose uses
    // decide whether that is allowed.
    let mut unset: Vec<(&str, &Type, Pos, bool)> = Vec::new();
    for definition in &operation.node.variable_definitions {
        let pos = definition.pos;
        let definition = &definition.node;
        let name = definition.name.node.as_str();
        let ty = &definition.var_type.node;
        match variables.get(name) {
            None if definition.default_value.is_some() => {}
            None if !ty.nullable => errors.push(bad_input(
                format!("Variable \"${name}\" of required type \"{ty}\" was not provided."),
                pos,
                "variable",
                name,
            )),
            None => unset.push((name, ty, pos, false)),
            Some(Json::Null) if !ty.nullable => errors.push(bad_input(
                format!("Variable \"${name}\" of non-null type \"{ty}\" must not be null."),
                pos,
                "variable",
                name,
            )),
            Some(Json::Null) => unset.push((name, ty, pos, true)),
            Some(value) => {
                let mut problems = Vec::new();
                types.check(ty, value, Path::Root(name), &mut problems);
                for problem in problems {
                    errors.push(bad_input(
                        problem_message(&format!("Variable \"${name}\""), &problem),
                        pos,
                        "variable",
                        &problem.path,
                    ));
                }
            }
        }
    }
    if !unset.is_empty() {
        let uses = variable_uses(types, document, &operation.node);
        for (name, ty, pos, is_null) in unset {
            let Some(uses) = uses.get(name) else {
                continue;
            };
            match settle_unset(uses, is_null) {
                Unset::Allowed => {}
                Unset::Default(default) => {
                    if let Ok(default) = default.clone().into_json() {
                        variables.insert(name.to_owned(), default);
                    }
                }
                Unset::Refused(position) => {
                    let message = if is_null {
                        format!(
                            "Variable \"${name}\" is null, but argument \"{}\" of type \"{}\" must not be null.",
                            position.path, position.ty
                        )
                    } else {
                        format!(
                            "Variable \"${name}\" of type \"{ty}\" was not provided, but argument \"{}\" of type \"{}\" needs a value.",
                            position.path, position.ty
                        )
                    };
                    errors.push(bad_input(message, pos, "variable", name));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A place a variable's value goes to.
struct Position<'t> {
    /// The argument, or the input field inside it (`input.title`).
    path: String,
    ty: &'t Type,
    default: Option<&'t ConstValue>,
}

enum Unset<'t> {
    /// Null is fine everywhere the variable goes.
    Allowed,
    /// Not sent, and every place it goes has this default.
    Default(&'t ConstValue),
    /// This place needs a value.
    Refused(&'t Position<'t>),
}

fn settle_unset<'t>(uses: &'t [Position<'t>], is_null: bool) -> Unset<'t> {
    let Some(required) = uses.iter().find(|position| !position.ty.nullable) else {
        return Unset::Allowed;
    };
    if !is_null
        && let Some(first) = uses[0].default
        && uses.iter().all(|position| position.default == Some(first))
    {
        return Unset::Default(first);
    }
    Unset::Refused(required)
}

/// Where each variable goes in `operation`, through the fragments it
/// spreads (each visited once).
fn variable_uses<'t>(
    types: &'t InputTypes,
    document: &ExecutableDocument,
    operation: &OperationDefinition,
) -> HashMap<String, Vec<Position<'t>>> {
    let mut walk = UseWalk {
        types,
        document,
        visited: HashSet::new(),
        uses: HashMap::new(),
    };
    walk.directives(&operation.directives);
    walk.selection_set(types.root(operation.ty), &operation.selection_set.node);
    walk.uses
}

struct UseWalk<'t, 'd> {
    types: &'t InputTypes,
    document: &'d ExecutableDocument,
    visited: HashSet<&'d str>,
    uses: HashMap<String, Vec<Position<'t>>>,
}

impl<'t, 'd> UseWalk<'t, 'd> {
    fn selection_set(&mut self, parent: Option<&str>, set: &'d SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    self.directives(&field.directives);
                    let types = self.types;
                    let definition = types.field(parent, &field.name.node);
                    if let Some(definition) = definition {
                        self.arguments(&definition.args, &field.arguments);
                    }
                    self.selection_set(
                        definition.map(|d| d.named_type.as_str()),
                        &field.selection_set.node,
                    );
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    self.directives(&fragment.directives);
                    let on = fragment
                        .type_condition
                        .as_ref()
                        .map_or(parent, |condition| Some(condition.node.on.node.as_str()));
                    self.selection_set(on, &fragment.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives(&spread.node.directives);
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(fragment) = self.document.fragments.get(name)
                        && self.visited.insert(name)
                    {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.selection_set(Some(on), &fragment.node.selection_set.node);
                    }
                }
            }
        }
    }

    fn directives(&mut self, directives: &'d [Positioned<Directive>]) {
        let types = self.types;
        for directive in directives {
            if let Some(args) = types.directives.get(directive.node.name.node.as_str()) {
                self.arguments(args, &directive.node.arguments);
            }
        }
    }

    fn arguments(
        &mut self,
        definitions: &'t [InputValue],
        arguments: &'d [(Positioned<Name>, Positioned<Value>)],
    ) {
        for (name, value) in arguments {
            if let Some(definition) = definitions.iter().find(|d| d.name == name.node.as_str()) {
                self.value(
                    &definition.ty,
                    definition.default.as_ref(),
                    &value.node,
                    Path::Root(&definition.name),
                );
            }
        }
    }

    fn value(
        &mut self,
        ty: &'t Type,
        default: Option<&'t ConstValue>,
        value: &'d Value,
        path: Path<'_>,
    ) {
        match value {
            Value::Variable(name) => {
                self.uses
                    .entry(name.to_string())
                    .or_default()
                    .push(Position {
                        path: path.to_string(),
                        ty,
                        default,
                    })
            }
            Value::List(items) => {
                let item_type = match &ty.base {
                    BaseType::List(item) => item.as_ref(),
                    BaseType::Named(_) => return,
                };
                for (index, item) in items.iter().enumerate() {
                    self.value(item_type, None, item, Path::Index(&path, index));
                }
            }
            Value::Object(fields) => {
                let types = self.types;
                let Some(definitions) = types.inputs.get(named_type(ty)) else {
                    return;
                };
                for (key, field_value) in fields {
                    if let Some(definition) = definitions.iter().find(|d| d.name == key.as_str()) {
                        self.value(
                            &definition.ty,
                            definition.default.as_ref(),
                            field_value,
                            Path::Field(&path, &definition.name),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document_errors(query: &str) -> Vec<(String, String)> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        check_document(&document)
            .into_iter()
            .map(|error| {
                let argument = error
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("argument").or_else(|| e.get("variable")))
                    .map(ToString::to_string)
                    .unwrap_or_default();
                (error.message, argument.trim_matches('"').to_owned())
            })
            .collect()
    }

    fn variable_errors(query: &str, variables: Json) -> Result<Json, Vec<(String, String)>> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        let Json::Object(mut variables) = variables else {
            panic!("variables are an object");
        };
        match check_variables(&document, None, &mut variables) {
            Ok(()) => Ok(Json::Object(variables)),
            Err(errors) => Err(errors
                .into_iter()
                .map(|error| {
                    let variable = error
                        .extensions
                        .as_ref()
                        .and_then(|e| e.get("variable"))
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    (error.message, variable.trim_matches('"').to_owned())
                })
                .collect()),
        }
    }

    #[test]
    fn the_model_knows_the_schema() {
        let types = &*INPUT_TYPES;
        assert_eq!(types.query, "Query");
        assert_eq!(types.mutation.as_deref(), Some("Mutation"));
        assert!(types.inputs.contains_key("CreateAnimeInput"));
        assert_eq!(
            types.enums["AnimeSeason"],
            ["WINTER", "SPRING", "SUMMER", "FALL"]
        );
        assert_eq!(
            types
                .field(Some("Query"), "popularAnime")
                .map(|f| f.named_type.as_str()),
            Some("Anime")
        );
        assert!(types.directives.contains_key("skip"));
    }

    #[test]
    fn every_bad_field_of_an_input_literal_is_reported() {
        let errors = document_errors(
            r#"mutation { createAnime(input: {title: 5, format: XX, status: FINISHED, year: "1999", genres: ["a", 2], pictureUrl: "https://x.example/p.png", bogus: 1}) { id } }"#,
        );
        assert_eq!(
            errors,
            [
                (
                    "Argument \"input\" has an invalid value at \"input.title\": expected type \"String!\", found 5.".to_owned(),
                    "input.title".to_owned()
                ),
                (
                    "Argument \"input\" has an invalid value at \"input.format\": expected type \"AnimeFormat!\" (one of TV, MOVIE, OVA, ONA, SPECIAL, MUSIC), found XX.".to_owned(),
                    "input.format".to_owned()
                ),
                (
                    "Argument \"input\" has an invalid value at \"input.year\": expected type \"Int\", found \"1999\".".to_owned(),
                    "input.year".to_owned()
                ),
                (
                    "Argument \"input\" has an invalid value at \"input.genres.1\": expected type \"String!\", found 2.".to_owned(),
                    "input.genres.1".to_owned()
                ),
                (
                    "Argument \"input\" has an invalid value at \"input.synopsis\": required field of type \"String!\" was not provided.".to_owned(),
                    "input.synopsis".to_owned()
                ),
                (
                    "Argument \"input\" has an invalid value at \"input.bogus\": type \"CreateAnimeInput\" has no field \"bogus\".".to_owned(),
                    "input.bogus".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn scalars_follow_the_specification() {
        let one = |query: &str| {
            document_errors(query)
                .into_iter()
                .map(|(m, _)| m)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            one("{ popularAnime(limit: \"ten\") { id } }"),
            ["Argument \"limit\" has an invalid value: expected type \"Int!\", found \"ten\"."]
        );
        assert_eq!(
            one("{ popularAnime(limit: 3000000000) { id } }"),
            [
                "Argument \"limit\" has an invalid value: expected type \"Int!\", found 3000000000, outside the 32-bit range of Int."
            ]
        );
        assert_eq!(
            one("{ anime(id: 1.5) { id } }"),
            ["Argument \"id\" has an invalid value: expected type \"ID!\", found 1.5."]
        );
        assert_eq!(
            one("{ animeCount @skip(if: \"yes\") }"),
            [
                "Argument \"if\" of directive \"@skip\" has an invalid value: expected type \"Boolean!\", found \"yes\"."
            ]
        );
        assert_eq!(
            one("query($n: Int = \"x\") { popularAnime(limit: $n) { id } }"),
            ["Variable \"$n\" has an invalid default value: expected type \"Int\", found \"x\"."]
        );
        for fine in [
            "{ popularAnime(limit: 5) { id } anime(id: 7) { id } a: anime(id: \"7\") { id } }",
            "query($n: Int = 5) { popularAnime(limit: $n) { id } }",
            "mutation { invalidateAnime(ids: \"1\") { deleted } }",
            "{ ... on Query { noSuchField(x: \"y\") } __type(name: 5) { name } }",
            "fragment F on Anime { id } { anime(id: 1) { ...F @include(if: true) } }",
        ] {
            assert_eq!(one(fine), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn a_required_variable_that_was_not_sent_says_so() {
        let query = "query($limit: Int!) { popularAnime(limit: $limit) { id } }";
        assert_eq!(
            variable_errors(query, serde_json::json!({})),
            Err(vec![(
                "Variable \"$limit\" of required type \"Int!\" was not provided.".to_owned(),
                "limit".to_owned()
            )])
        );
        assert_eq!(
            variable_errors(query, serde_json::json!({"limit": null})),
            Err(vec![(
                "Variable \"$limit\" of non-null type \"Int!\" must not be null.".to_owned(),
                "limit".to_owned()
            )])
        );
        assert!(
            variable_errors(
                "query($limit: Int! = 3) { popularAnime(limit: $limit) { id } }",
                serde_json::json!({})
            )
            .is_ok()
        );
    }

    #[test]
    fn one_wrong_variable_is_one_error() {
        let query = "query($limit: Int) { popularAnime(limit: $limit) { id } }";
        for (value, found) in [
            (serde_json::json!("abc"), "\"abc\""),
            (serde_json::json!(1e99), "1e+99"),
            (serde_json::json!({"a": 1}), "{\"a\":1}"),
        ] {
            assert_eq!(
                variable_errors(query, serde_json::json!({ "limit": value })),
                Err(vec![(
                    format!(
                        "Variable \"$limit\" has an invalid value: expected type \"Int\", found {found}."
                    ),
                    "limit".to_owned()
                )])
            );
        }
    }

    #[test]
    fn every_bad_field_of_an_input_variable_is_reported() {
        let query =
            "mutation($input: UpdateAnimeInput!) { updateAnime(id: 1, input: $input) { id } }";
        let errors = variable_errors(
            query,
            serde_json::json!({"input": {"year": "1999", "score": "high", "season": "AUTUMN", "genres": ["a", null]}}),
        )
        .expect_err("four problems");
        let paths: Vec<&str> = errors.iter().map(|(_, path)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "input.season",
                "input.year",
                "input.score",
                "input.genres.1"
            ]
        );
        assert_eq!(
            errors[1].0,
            "Variable \"$input\" has an invalid value at \"input.year\": expected type \"Int\", found \"1999\"."
        );
    }

    #[test]
    fn a_nullable_variable_not_sent_takes_the_default_it_feeds() {
        let query = "query($limit: Int) { popularAnime(limit: $limit) { id } animePage(perPage: $limit) { total } }";
        assert_eq!(
            variable_errors(query, serde_json::json!({})),
            Ok(serde_json::json!({"limit": 20}))
        );
        assert_eq!(
            variable_errors(query, serde_json::json!({"limit": null})),
            Err(vec![(
                "Variable \"$limit\" is null, but argument \"limit\" of type \"Int!\" must not be null.".to_owned(),
                "limit".to_owned()
            )])
        );
        let no_default = "query($id: ID) { anime(id: $id) { id } }";
        assert_eq!(
            variable_errors(no_default, serde_json::json!({})),
            Err(vec![(
                "Variable \"$id\" of type \"ID\" was not provided, but argument \"id\" of type \"ID!\" needs a value.".to_owned(),
                "id".to_owned()
            )])
        );
        let two_defaults =
            "query($n: Int) { popularAnime(limit: $n) { id } animePage(page: $n) { total } }";
        assert!(variable_errors(two_defaults, serde_json::json!({})).is_err());
        let nested = "mutation($s: AnimeSeason) { updateAnime(id: 1, input: {season: $s}) { id } }";
        assert_eq!(
            variable_errors(nested, serde_json::json!({})),
            Ok(serde_json::json!({})),
            "a nullable position takes null"
        );
    }
}
