//! The CEL environment of admission policies: the `cel` crate's interpreter with Kubernetes'
//! extension libraries (`kube-cel`: strings, lists, sets, regex, URLs, IPs, quantities,
//! semver, format), JSON values converted as upstream's `UnstructuredToVal` does (integers
//! are `int`, objects are maps), and upstream's wording for compile and runtime errors.
//!
//! Pure: no I/O. The registry checks that a policy's expressions compile when it is written;
//! the admission plugin (`crate::admission::policy`) evaluates them.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt as _;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::Value;

/// A compiled expression with its source, for messages.
#[derive(Debug)]
pub struct Expression {
    program: Program,
    source: String,
}

/// Why an expression is refused when a policy is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Not CEL.
    #[error("compilation failed: {0}")]
    Syntax(String),
    /// Names `authorizer`, which needs upstream's authorizer inside CEL.
    #[error("the authorizer variable is not available in this control plane's CEL environment")]
    Authorizer,
}

impl Expression {
    /// Parses `source` and checks that it names only variables of the environment (or
    /// ones its own comprehensions bind).
    ///
    /// # Errors
    /// [`CompileError`].
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        let program = Program::compile(source).map_err(|e| {
            CompileError::Syntax(e.to_string().lines().next().unwrap_or("").trim().to_owned())
        })?;
        if program.references().has_variable("authorizer") {
            return Err(CompileError::Authorizer);
        }
        Ok(Self {
            program,
            source: source.to_owned(),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `variables.NAME` (used to attribute a failed
    /// variable's error only to the expressions that read it).
    pub fn reads_variable(&self, name: &str) -> bool {
        self.source.contains(&format!("variables.{name}"))
    }

    /// Evaluates in `ctx` (a [`Bindings::context`]); upstream's message on failure:
    /// `expression 'SOURCE' resulted in error: WHY`.
    ///
    /// # Errors
    /// The evaluation error, worded as upstream.
    pub fn eval(&self, ctx: &Context<'_>) -> Result<Cel, String> {
        self.program
            .execute(ctx)
            .map_err(|e| format!("expression '{}' resulted in error: {e}", self.source.trim()))
    }

    /// Evaluates to a bool.
    ///
    /// # Errors
    /// An evaluation error or a value that is not a bool, worded as upstream.
    pub fn eval_bool(&self, ctx: &Context<'_>) -> Result<bool, String> {
        match self.eval(ctx)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!(
                "expression '{}' resulted in error: expected bool, got {}",
                self.source.trim(),
                type_name(&other)
            )),
        }
    }

    /// Evaluates to a string (a `messageExpression` or an audit annotation's value).
    ///
    /// # Errors
    /// An evaluation error or a value that is not a string.
    pub fn eval_string(&self, ctx: &Context<'_>) -> Result<String, String> {
        match self.eval(ctx)? {
            Cel::String(s) => Ok((*s).clone()),
            other => Err(format!(
                "expression '{}' resulted in error: expected string, got {}",
                self.source.trim(),
                type_name(&other)
            )),
        }
    }
}

fn type_name(v: &Cel) -> &'static str {
    match v {
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Function(..) => "function",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::Bool(_) => "bool",
        Cel::Duration(_) => "duration",
        Cel::Timestamp(_) => "timestamp",
        Cel::Opaque(_) => "opaque",
        Cel::Null => "null",
    }
}

/// The named values an expression is evaluated with.
#[derive(Debug, Clone, Default)]
pub struct Bindings(Vec<(String, Cel)>);

impl Bindings {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to a JSON value (replacing an earlier binding of the name).
    pub fn set_json(&mut self, name: &str, value: &Value) {
        self.set(name, from_json(value));
    }

    /// Binds `name` to a CEL value (replacing an earlier binding of the name).
    pub fn set(&mut self, name: &str, value: Cel) {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value));
    }

    /// The context expressions are evaluated in: Kubernetes' libraries and these variables.
    /// Made once per evaluation of a policy (registering the libraries is most of its cost);
    /// values are shared, not copied. A variable set on it later replaces one of these.
    pub fn context(&self) -> Context<'static> {
        let mut ctx = Context::default().with_all();
        for (name, value) in &self.0 {
            ctx.add_variable_from_value(name.clone(), value.clone());
        }
        ctx
    }
}

/// A map of string keys, as CEL sees an object.
pub fn map(entries: impl IntoIterator<Item = (String, Cel)>) -> Cel {
    let map: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Cel::Map(Map { map: Arc::new(map) })
}

/// A JSON value as CEL sees it: integers are `int` (`uint` only beyond `i64`), other
/// numbers `double`, objects maps with string keys.
pub fn from_json(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(from_json).collect())),
        Value::Object(o) => map(o.iter().map(|(k, v)| (k.clone(), from_json(v)))),
    }
}

/// One `validations` entry of a policy.
#[derive(Debug)]
pub struct Validation {
    /// `expression`: true admits.
    pub expression: Expression,
    /// `message` (may be empty).
    pub message: String,
    /// `messageExpression`, if any.
    pub message_expression: Option<Expression>,
    /// `reason` (empty: `Invalid`).
    pub reason: String,
}

/// Every expression of a ValidatingAdmissionPolicy's spec, compiled.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// `matchConditions`: (name, expression); all must hold for the policy to apply.
    pub match_conditions: Vec<(String, Expression)>,
    /// `variables`: (name, expression), each may read the ones before it.
    pub variables: Vec<(String, Expression)>,
    /// `validations`.
    pub validations: Vec<Validation>,
    /// `auditAnnotations`: (key, valueExpression).
    pub audit_annotations: Vec<(String, Expression)>,
}

/// An expression of a policy that does not compile: its field path, its text and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCompileError {
    /// Upstream's field path, e.g. `spec.validations[0].expression`.
    pub field: String,
    /// The expression.
    pub expression: String,
    /// Why.
    pub error: CompileError,
}

impl CompiledPolicy {
    /// Compiles every expression of `spec` (a ValidatingAdmissionPolicy's `spec`).
    ///
    /// # Errors
    /// One entry per expression that does not compile.
    pub fn compile(spec: &Value) -> Result<Self, Vec<PolicyCompileError>> {
        let mut errors = Vec::new();
        let mut one = |field: String, source: &str| match Expression::compile(source) {
            Ok(e) => Some(e),
            Err(error) => {
                errors.push(PolicyCompileError {
                    field,
                    expression: source.to_owned(),
                    error,
                });
                None
            }
        };
        let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
        let list = |f: &str| {
            spec.get(f)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut named =
            |f: &str, name_field: &str, expr_field: &str| -> Vec<(String, Expression)> {
                list(f)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        let e = one(
                            format!("spec.{f}[{i}].{expr_field}"),
                            &text(item, expr_field),
                        )?;
                        Some((text(item, name_field), e))
                    })
                    .collect()
            };
        let match_conditions = named("matchConditions", "name", "expression");
        let variables = named("variables", "name", "expression");
        let audit_annotations = named("auditAnnotations", "key", "valueExpression");
        let mut validations = Vec::new();
        for (i, v) in list("validations").iter().enumerate() {
            let expression = one(
                format!("spec.validations[{i}].expression"),
                &text(v, "expression"),
            );
            let message_source = text(v, "messageExpression");
            let message_expression = (!message_source.is_empty()).then(|| {
                one(
                    format!("spec.validations[{i}].messageExpression"),
                    &message_source,
                )
            });
            if let (Some(expression), None | Some(Some(_))) = (expression, &message_expression) {
                validations.push(Validation {
                    expression,
                    message: text(v, "message"),
                    message_expression: message_expression.flatten(),
                    reason: text(v, "reason"),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            match_conditions,
            variables,
            validations,
            audit_annotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_object(obj: Value) -> Bindings {
        let mut b = Bindings::new();
        b.set_json("object", &obj);
        b
    }

    #[test]
    fn objects_read_as_upstream_converts_them() {
        let b = with_object(json!({"spec": {"replicas": 6, "ratio": 0.5, "name": "web",
            "labels": {"app": "web"}, "ports": [80, 443]}}));
        let ctx = b.context();
        let eval = |e: &str| Expression::compile(e).unwrap().eval_bool(&ctx);
        assert_eq!(eval("object.spec.replicas <= 5"), Ok(false));
        assert_eq!(
            eval("object.spec.replicas > 5 && object.spec.ratio < 1.0"),
            Ok(true)
        );
        assert_eq!(eval("object.spec.name.startsWith('w')"), Ok(true));
        assert_eq!(eval("'app' in object.spec.labels"), Ok(true));
        assert_eq!(eval("object.spec.ports.all(p, p < 1024)"), Ok(true));
        assert_eq!(eval("has(object.spec.missing)"), Ok(false));
        // Kubernetes' libraries are there: quantities, and lists.
        assert_eq!(
            eval("quantity('1Gi').isGreaterThan(quantity('512Mi'))"),
            Ok(true)
        );
        assert_eq!(eval("[1, 2, 3].isSorted()"), Ok(true));
    }

    #[test]
    fn errors_are_worded_as_upstream() {
        let b = with_object(json!({"spec": {}})).context();
        let e = Expression::compile("object.spec.replicas > 1").unwrap();
        let err = e.eval_bool(&b).unwrap_err();
        assert!(
            err.starts_with("expression 'object.spec.replicas > 1' resulted in error: "),
            "{err}"
        );
        let e = Expression::compile("object.spec").unwrap();
        assert!(
            e.eval_bool(&b)
                .unwrap_err()
                .contains("expected bool, got map")
        );
        assert!(matches!(
            Expression::compile("object.spec.("),
            Err(CompileError::Syntax(_))
        ));
        assert_eq!(
            Expression::compile("authorizer.group('').resource('pods').check('get').allowed()")
                .unwrap_err(),
            CompileError::Authorizer
        );
    }

    #[test]
    fn a_policy_compiles_whole_or_names_each_broken_expression() {
        let spec = json!({
            "matchConditions": [{"name": "not-system", "expression": "request.namespace != 'kube-system'"}],
            "variables": [{"name": "max", "expression": "5"}],
            "validations": [
                {"expression": "object.spec.replicas <= variables.max", "messageExpression": "'too many: ' + string(object.spec.replicas)"},
                {"expression": "true", "message": "m", "reason": "Forbidden"},
            ],
            "auditAnnotations": [{"key": "replicas", "valueExpression": "string(object.spec.replicas)"}],
        });
        let p = CompiledPolicy::compile(&spec).unwrap();
        assert_eq!(p.match_conditions[0].0, "not-system");
        assert_eq!(p.variables[0].0, "max");
        assert!(p.validations[0].expression.reads_variable("max"));
        assert!(p.validations[0].message_expression.is_some());
        assert_eq!(
            (
                p.validations[1].message.as_str(),
                p.validations[1].reason.as_str()
            ),
            ("m", "Forbidden")
        );
        assert_eq!(p.audit_annotations[0].0, "replicas");

        let broken = json!({
            "validations": [{"expression": "true"}, {"expression": "object.(", "messageExpression": "'"}],
            "variables": [{"name": "a", "expression": "authorizer.serviceAccount('ns', 'sa')"}],
        });
        let errors = CompiledPolicy::compile(&broken).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.variables[0].expression",
                "spec.validations[1].expression",
                "spec.validations[1].messageExpression"
            ]
        );
        assert_eq!(errors[0].error, CompileError::Authorizer);
    }

    #[test]
    fn later_bindings_replace_earlier_ones() {
        let mut b = Bindings::new();
        b.set_json("params", &json!({"max": 1}));
        b.set_json("params", &json!({"max": 2}));
        let e = Expression::compile("params.max == 2").unwrap();
        assert_eq!(e.eval_bool(&b.context()), Ok(true));
    }
}
