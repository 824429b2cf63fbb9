//! The contracts around the code: the committed SDL (equal to the code's,
//! and saying what introspection says), `.env.example`, and the binary's
//! handling of bad configuration.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use async_graphql::Value as ConstValue;
use async_graphql::parser::types::{
    ConstDirective, InputValueDefinition, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Positioned, parser};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

#[test]
fn schema_graphql_equals_the_exported_sdl() {
    let committed = repo_file("schema.graphql");
    let exported = anigo::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn env_example_names_every_variable_the_config_reads() {
    // Arrange: record every variable name the config asks for, with the
    // REDIS_URL branch and the REDIS_HOST branch both exercised.
    let asked = RefCell::new(BTreeSet::new());
    let _ = anigo::Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        None
    });
    let _ = anigo::Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        (name == "REDIS_URL").then(|| "redis://127.0.0.1:6379/0".to_owned())
    });
    let example = repo_file(".env.example");
    let documented: BTreeSet<String> = example
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect();

    // Assert
    let missing: Vec<_> = asked.borrow().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    assert!(
        asked.borrow().len() >= 12,
        "config read suspiciously few variables: {:?}",
        asked.borrow()
    );
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("REDIS_PORT", "abc")
        .output()
        .expect("running anigo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("REDIS_PORT=\"abc\""), "{stderr}");
    assert!(stderr.contains("port number"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("REDIS_URL", "memcached://x:1")
        .output()
        .expect("running anigo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
}

#[test]
fn the_schema_command_prints_the_sdl() {
    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .arg("schema")
        .env_clear()
        .output()
        .expect("running anigo schema");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        anigo::graphql::sdl()
    );
}

/// graphql-js's `getIntrospectionQuery` with every option on: schema and
/// type descriptions, `specifiedByURL`, `isRepeatable`, `isOneOf` and
/// deprecated arguments and input fields. GraphiQL and codegen tools send
/// (a subset of) this.
const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives {
      name
      description
      isRepeatable
      locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  specifiedByURL
  isOneOf
  fields(includeDeprecated: true) {
    name
    description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
  isDeprecated
  deprecationReason
}
fragment TypeRef on __Type {
  kind
  name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

/// What a schema says about itself, in a form both `schema.graphql` and
/// an introspection result can be brought to.
#[derive(Debug, Default, PartialEq)]
struct SchemaShape {
    description: Option<String>,
    /// Query, mutation and subscription root names.
    roots: [Option<String>; 3],
    types: BTreeMap<String, TypeShape>,
    directives: BTreeMap<String, DirectiveShape>,
}

#[derive(Debug, Default, PartialEq)]
struct TypeShape {
    kind: &'static str,
    description: Option<String>,
    specified_by: Option<String>,
    is_one_of: bool,
    fields: Vec<FieldShape>,
    input_fields: Vec<InputShape>,
    enum_values: Vec<(String, Option<String>, Option<String>)>,
    interfaces: Vec<String>,
    possible_types: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct FieldShape {
    name: String,
    description: Option<String>,
    args: Vec<InputShape>,
    ty: String,
    deprecation: Option<String>,
}

#[derive(Debug, PartialEq)]
struct InputShape {
    name: String,
    description: Option<String>,
    ty: String,
    default: Option<String>,
    deprecation: Option<String>,
}

#[derive(Debug, PartialEq)]
struct DirectiveShape {
    description: Option<String>,
    locations: Vec<String>,
    args: Vec<InputShape>,
    is_repeatable: bool,
}

/// The directives every GraphQL service has, which SDL may leave out (the
/// specification allows it; `schema.graphql` does).
const BUILT_IN_DIRECTIVES: &[&str] = &["deprecated", "include", "oneOf", "skip", "specifiedBy"];
/// The scalars every GraphQL service has, never printed in SDL.
const BUILT_IN_SCALARS: &[&str] = &["Boolean", "Float", "ID", "Int", "String"];

/// The reason of a `@deprecated` among `directives` (the spec's default
/// reason when it has none).
fn deprecation(directives: &[Positioned<ConstDirective>]) -> Option<String> {
    let directive = directives
        .iter()
        .find(|d| d.node.name.node == "deprecated")?;
    Some(match directive.node.get_argument("reason") {
        Some(Positioned {
            node: ConstValue::String(reason),
            ..
        }) => reason.clone(),
        _ => "No longer supported".to_owned(),
    })
}

fn sdl_inputs(values: &[Positioned<InputValueDefinition>]) -> Vec<InputShape> {
    values
        .iter()
        .map(|value| InputShape {
            name: value.node.name.node.to_string(),
            description: value.node.description.as_ref().map(|d| d.node.clone()),
            ty: value.node.ty.node.to_string(),
            default: value
                .node
                .default_value
                .as_ref()
                .map(|d| d.node.to_string()),
            deprecation: deprecation(&value.node.directives),
        })
        .collect()
}

impl SchemaShape {
    /// `schema.graphql` as async-graphql's SDL parser reads it. That parser
    /// predates schema descriptions, so the description before `schema {`
    /// is moved onto a placeholder scalar for parsing, and read from there
    /// (with the specification's block-string rules).
    fn from_sdl(sdl: &str) -> Self {
        const HOLDER: &str = "SchemaDescriptionHolder";
        let at = sdl.rfind("schema {").expect("a schema block");
        let sdl = format!("{}scalar {HOLDER}\n{}", &sdl[..at], &sdl[at..]);
        let document = parser::parse_schema(&sdl).expect("schema.graphql parses");
        let mut shape = Self::default();
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    shape.roots = [
                        schema.query.map(|n| n.node.to_string()),
                        schema.mutation.map(|n| n.node.to_string()),
                        schema.subscription.map(|n| n.node.to_string()),
                    ];
                }
                TypeSystemDefinition::Directive(directive) => {
                    let directive = directive.node;
                    shape.directives.insert(
                        directive.name.node.to_string(),
                        DirectiveShape {
                            description: directive.description.map(|d| d.node),
                            locations: directive
                                .locations
                                .iter()
                                .map(|l| screaming_snake(&format!("{:?}", l.node)))
                                .collect(),
                            args: sdl_inputs(&directive.arguments),
                            // async-graphql-parser 7.2 reads every
                            // directive as repeatable (its grammar's
                            // `repeatable` rule also matches nothing), so
                            // the definition's text decides.
                            is_repeatable: sdl.lines().any(|line| {
                                line.starts_with(&format!("directive @{}", directive.name.node))
                                    && line.contains(" repeatable ")
                            }),
                        },
                    );
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let name = ty.name.node.to_string();
                    let description = ty.description.map(|d| d.node);
                    if name == HOLDER {
                        shape.description = description;
                        continue;
                    }
                    let mut out = TypeShape {
                        description,
                        ..TypeShape::default()
                    };
                    let directive_arg = |directive: &str, arg: &str| {
                        ty.directives
                            .iter()
                            .find(|d| d.node.name.node == directive)
                            .map(|d| match d.node.get_argument(arg) {
                                Some(Positioned {
                                    node: ConstValue::String(url),
                                    ..
                                }) => url.clone(),
                                _ => String::new(),
                            })
                    };
                    out.specified_by = directive_arg("specifiedBy", "url");
                    out.is_one_of = directive_arg("oneOf", "").is_some();
                    match ty.kind {
                        TypeKind::Scalar => out.kind = "SCALAR",
                        TypeKind::Object(object) => {
                            out.kind = "OBJECT";
                            out.interfaces = object
                                .implements
                                .iter()
                                .map(|n| n.node.to_string())
                                .collect();
                            out.fields = sdl_fields(&object.fields);
                        }
                        TypeKind::Interface(interface) => {
                            out.kind = "INTERFACE";
                            out.interfaces = interface
                                .implements
                                .iter()
                                .map(|n| n.node.to_string())
                                .collect();
                            out.fields = sdl_fields(&interface.fields);
                        }
                        TypeKind::Union(union) => {
                            out.kind = "UNION";
                            out.possible_types =
                                union.members.iter().map(|n| n.node.to_string()).collect();
                        }
                        TypeKind::Enum(enumeration) => {
                            out.kind = "ENUM";
                            out.enum_values = enumeration
                                .values
                                .iter()
                                .map(|v| {
                                    (
                                        v.node.value.node.to_string(),
                                        v.node.description.as_ref().map(|d| d.node.clone()),
                                        deprecation(&v.node.directives),
                                    )
                                })
                                .collect();
                        }
                        TypeKind::InputObject(input) => {
                            out.kind = "INPUT_OBJECT";
                            out.input_fields = sdl_inputs(&input.fields);
                        }
                    }
                    shape.types.insert(name, out);
                }
            }
        }
        shape
    }

    /// The `__schema` of an introspection result.
    fn from_introspection(schema: &Value) -> Self {
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let names = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| items.iter().filter_map(|t| text(&t["name"])).collect())
                .unwrap_or_default()
        };
        let mut shape = Self {
            description: text(&schema["description"]),
            roots: [
                text(&schema["queryType"]["name"]),
                text(&schema["mutationType"]["name"]),
                text(&schema["subscriptionType"]["name"]),
            ],
            ..Self::default()
        };
        for ty in schema["types"].as_array().expect("types") {
            let name = text(&ty["name"]).expect("a named type");
            if name.starts_with("__") {
                continue;
            }
            let kind = match ty["kind"].as_str() {
                Some("SCALAR") => "SCALAR",
                Some("OBJECT") => "OBJECT",
                Some("INTERFACE") => "INTERFACE",
                Some("UNION") => "UNION",
                Some("ENUM") => "ENUM",
                Some("INPUT_OBJECT") => "INPUT_OBJECT",
                other => panic!("unexpected kind {other:?}"),
            };
            let fields = ty["fields"]
                .as_array()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|field| FieldShape {
                            name: text(&field["name"]).expect("name"),
                            description: text(&field["description"]),
                            args: introspected_inputs(&field["args"]),
                            ty: type_ref(&field["type"]),
                            deprecation: introspected_deprecation(field),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let enum_values = ty["enumValues"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(|v| {
                            (
                                text(&v["name"]).expect("name"),
                                text(&v["description"]),
                                introspected_deprecation(v),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            shape.types.insert(
                name,
                TypeShape {
                    kind,
                    description: text(&ty["description"]),
                    specified_by: text(&ty["specifiedByURL"]),
                    is_one_of: ty["isOneOf"] == json!(true),
                    fields,
                    input_fields: introspected_inputs(&ty["inputFields"]),
                    enum_values,
                    interfaces: names(&ty["interfaces"]),
                    possible_types: names(&ty["possibleTypes"]),
                },
            );
        }
        for directive in schema["directives"].as_array().expect("directives") {
            shape.directives.insert(
                text(&directive["name"]).expect("name"),
                DirectiveShape {
                    description: text(&directive["description"]),
                    locations: directive["locations"]
                        .as_array()
                        .expect("locations")
                        .iter()
                        .filter_map(text)
                        .collect(),
                    args: introspected_inputs(&directive["args"]),
                    is_repeatable: directive["isRepeatable"] == json!(true),
                },
            );
        }
        shape
    }
}

fn sdl_fields(
    fields: &[Positioned<async_graphql::parser::types::FieldDefinition>],
) -> Vec<FieldShape> {
    fields
        .iter()
        .map(|field| FieldShape {
            name: field.node.name.node.to_string(),
            description: field.node.description.as_ref().map(|d| d.node.clone()),
            args: sdl_inputs(&field.node.arguments),
            ty: field.node.ty.node.to_string(),
            deprecation: deprecation(&field.node.directives),
        })
        .collect()
}

/// `FRAGMENT_SPREAD` from `FragmentSpread`: directive locations as
/// introspection spells them.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `[String!]!` from an introspected type reference.
fn type_ref(ty: &Value) -> String {
    match ty["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&ty["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap_or("?").to_owned(),
    }
}

fn introspected_deprecation(item: &Value) -> Option<String> {
    (item["isDeprecated"] == json!(true)).then(|| {
        item["deprecationReason"]
            .as_str()
            .unwrap_or("No longer supported")
            .to_owned()
    })
}

fn introspected_inputs(values: &Value) -> Vec<InputShape> {
    values
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|value| InputShape {
                    name: value["name"].as_str().expect("name").to_owned(),
                    description: value["description"].as_str().map(str::to_owned),
                    ty: type_ref(&value["type"]),
                    default: value["defaultValue"].as_str().map(str::to_owned),
                    deprecation: introspected_deprecation(value),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn introspection_says_what_schema_graphql_says() {
    // Arrange
    let app = TestApp::spawn(Backend::Sqlite).await;
    let committed = SchemaShape::from_sdl(&repo_file("schema.graphql"));

    // Act
    let body = app.graphql(INTROSPECTION_QUERY, json!({})).await;

    // Assert
    assert!(body.get("errors").is_none(), "introspection failed: {body}");
    let introspected = SchemaShape::from_introspection(&body["data"]["__schema"]);
    assert_eq!(
        introspected.description, committed.description,
        "the schema description"
    );
    assert_eq!(introspected.roots, committed.roots, "the root types");
    assert_eq!(
        committed.roots,
        [Some("Query".to_owned()), Some("Mutation".to_owned()), None]
    );
    for (name, ty) in &committed.types {
        assert_eq!(introspected.types.get(name), Some(ty), "type {name}");
    }
    for name in introspected.types.keys() {
        assert!(
            committed.types.contains_key(name) || BUILT_IN_SCALARS.contains(&name.as_str()),
            "introspection has type {name}, schema.graphql does not"
        );
    }
    for (name, directive) in &committed.directives {
        assert_eq!(
            introspected.directives.get(name),
            Some(directive),
            "directive @{name}"
        );
    }
    for name in introspected.directives.keys() {
        assert!(
            committed.directives.contains_key(name) || BUILT_IN_DIRECTIVES.contains(&name.as_str()),
            "introspection has directive @{name}, schema.graphql does not"
        );
    }
    assert!(
        committed.types["DateTime"].specified_by.is_some(),
        "DateTime names its specification"
    );
}
