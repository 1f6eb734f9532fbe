//! Avro Parsing Canonical Form, written from the specification
//! ("Transforming into Parsing Canonical Form": PRIMITIVES, FULLNAMES, STRIP, ORDER, STRINGS,
//! INTEGERS, WHITESPACE).
//!
//! Why not apache-avro's `Schema::canonical_form`: in apache-avro 0.21 a logical type such as
//! `{"type":"long","logicalType":"timestamp-millis"}` comes out as `{"type":"long"}` instead of
//! `"long"`, so its fingerprints differ from Java's and fastavro's, and single-object records
//! would not be recognised by other readers. The interop test checks ours against fastavro.

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a JSON Avro schema.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(schema_json).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = String::with_capacity(schema_json.len() / 2);
    write_schema(&v, "", &mut out)?;
    Ok(out)
}

fn quote(s: &str, out: &mut String) {
    // serde_json writes non-ASCII characters as UTF-8 and escapes only what JSON requires.
    out.push_str(&Value::String(s.to_string()).to_string());
}

/// Full name and namespace of a named type or reference, per the specification.
fn full_name(name: &str, explicit_ns: Option<&str>, enclosing_ns: &str) -> (String, String) {
    if let Some((ns, _)) = name.rsplit_once('.') {
        return (name.to_string(), ns.to_string());
    }
    let ns = explicit_ns.unwrap_or(enclosing_ns);
    if ns.is_empty() {
        (name.to_string(), String::new())
    } else {
        (format!("{ns}.{name}"), ns.to_string())
    }
}

fn write_schema(v: &Value, ns: &str, out: &mut String) -> Result<(), String> {
    match v {
        Value::String(s) if PRIMITIVES.contains(&s.as_str()) => quote(s, out),
        Value::String(s) => quote(&full_name(s, None, ns).0, out),
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, ns, out)?;
            }
            out.push(']');
        }
        Value::Object(m) => write_object(m, ns, out)?,
        other => return Err(format!("not a schema: {other}")),
    }
    Ok(())
}

fn get<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a Value, String> {
    m.get(key).ok_or_else(|| format!("missing \"{key}\""))
}

fn write_object(m: &Map<String, Value>, ns: &str, out: &mut String) -> Result<(), String> {
    let ty = match get(m, "type")? {
        Value::String(t) => t.as_str(),
        // `{"type": <schema>}`: the object only wraps another schema.
        nested => return write_schema(nested, ns, out),
    };
    if PRIMITIVES.contains(&ty) {
        quote(ty, out);
        return Ok(());
    }
    match ty {
        "record" | "error" | "enum" | "fixed" => {
            let name = get(m, "name")?.as_str().ok_or("\"name\" is not a string")?;
            let explicit_ns = m.get("namespace").and_then(Value::as_str);
            let (full, inner_ns) = full_name(name, explicit_ns, ns);
            out.push_str("{\"name\":");
            quote(&full, out);
            out.push_str(",\"type\":");
            quote(ty, out);
            match ty {
                "enum" => {
                    out.push_str(",\"symbols\":");
                    let symbols = get(m, "symbols")?;
                    let symbols = symbols.as_array().ok_or("\"symbols\" is not an array")?;
                    out.push('[');
                    for (i, s) in symbols.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        quote(s.as_str().ok_or("enum symbol is not a string")?, out);
                    }
                    out.push(']');
                }
                "fixed" => {
                    out.push_str(",\"size\":");
                    let size = get(m, "size")?
                        .as_u64()
                        .ok_or("\"size\" is not an integer")?;
                    out.push_str(&size.to_string());
                }
                _ => {
                    out.push_str(",\"fields\":[");
                    let fields = get(m, "fields")?;
                    let fields = fields.as_array().ok_or("\"fields\" is not an array")?;
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let f = f.as_object().ok_or("a field is not an object")?;
                        out.push_str("{\"name\":");
                        quote(
                            get(f, "name")?
                                .as_str()
                                .ok_or("field name is not a string")?,
                            out,
                        );
                        out.push_str(",\"type\":");
                        write_schema(get(f, "type")?, &inner_ns, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(get(m, "items")?, ns, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(get(m, "values")?, ns, out)?;
            out.push('}');
        }
        // A reference to a named type written as `{"type": "Name"}`.
        other => quote(&full_name(other, None, ns).0, out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::framing::rabin_fingerprint;

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        let s = r#"{"type":"record","name":"A","namespace":"x.y","doc":"d","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"z"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}},
            {"name":"r","type":["null","E",{"type":"array","items":"string"}],"default":null},
            {"name":"o","type":{"type":"record","name":"q.B","fields":[{"name":"b","type":"x.y.E"}]}}
        ]}"#;
        assert_eq!(
            parsing_canonical_form(s).unwrap(),
            r#"{"name":"x.y.A","type":"record","fields":[{"name":"t","type":"long"},{"name":"e","type":{"name":"x.y.E","type":"enum","symbols":["A","B"]}},{"name":"r","type":["null","x.y.E",{"type":"array","items":"string"}]},{"name":"o","type":{"name":"q.B","type":"record","fields":[{"name":"b","type":"x.y.E"}]}}]}"#
        );
    }

    #[test]
    fn agrees_with_apache_avro_where_it_is_right() {
        for s in [
            r#""int""#,
            r#"{"type":"int"}"#,
            r#"{"type":"map","values":{"type":"fixed","name":"F","size":16}}"#,
            r#"{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":["null","string"],"default":null},{"name":"b","type":{"type":"array","items":"long"}}]}"#,
        ] {
            let theirs = apache_avro::Schema::parse_str(s).unwrap().canonical_form();
            assert_eq!(parsing_canonical_form(s).unwrap(), theirs, "{s}");
        }
    }

    #[test]
    fn spec_fingerprint_vector() {
        // CRC-64-AVRO of "null" is 7195948357588979594 in the Avro Java test suite and fastavro.
        let pcf = parsing_canonical_form(r#"{"type":"null"}"#).unwrap();
        assert_eq!(pcf, r#""null""#);
        assert_eq!(rabin_fingerprint(pcf.as_bytes()), 7_195_948_357_588_979_594);
    }

    #[test]
    fn rejects_non_schemas() {
        assert!(parsing_canonical_form("{").is_err());
        assert!(parsing_canonical_form("3").is_err());
        assert!(parsing_canonical_form(r#"{"type":"record","name":"A"}"#).is_err());
    }
}
