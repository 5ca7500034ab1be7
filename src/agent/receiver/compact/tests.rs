//! The compact span encoding, read as the Python shim writes it (the bodies
//! here are written by hand, in the layout the module documents), and hostile
//! bodies refused with a reason rather than a panic.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};

use super::*;

fn value(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn get<'a>(attributes: &'a [KeyValue], key: &str) -> &'a Option<AnyValue> {
    &attributes
        .iter()
        .find(|kv| kv.key == key)
        .unwrap_or_else(|| panic!("no attribute {key}"))
        .value
}

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

#[test]
fn spans_are_grouped_by_resource_then_scope_in_the_order_sent() {
    let body = format!(
        r#"[1,
        [[{{"service.name":"web"}},"https://opentelemetry.io/schemas/1.21.0",2],
         [{{"service.name":"other"}},"",0]],
        [["flask","0.66b1","s",{{"k":"v"}}],["sqlite3","",""  ,{{}}]],
        [[0,0,"{TRACE}","eee19b7ec3c1b174","","",257,"GET /users/<id>",2,10,20,{{}},0,[],0,[],0,0,""],
         [1,1,"{TRACE}","0000000000000002","","",1,"other",1,11,21,{{}},0,[],0,[],0,0,""],
         [0,1,"{TRACE}","0000000000000003","eee19b7ec3c1b174","",1,"SELECT",3,12,13,{{}},0,[],0,[],0,0,""],
         [0,0,"{TRACE}","0000000000000004","","",1,"second",2,30,40,{{}},0,[],0,[],0,0,""]]]"#
    );
    let resources = resources(body.as_bytes(), Form::Json).unwrap();
    assert_eq!(resources.len(), 2);
    let web = &resources[0];
    assert_eq!(web.schema_url, "https://opentelemetry.io/schemas/1.21.0");
    let resource = web.resource.as_ref().unwrap();
    assert_eq!(resource.dropped_attributes_count, 2);
    assert_eq!(
        get(&resource.attributes, "service.name"),
        &value(Value::StringValue("web".into()))
    );
    let scopes: Vec<_> = web
        .scope_spans
        .iter()
        .map(|s| {
            let scope = s.scope.as_ref().unwrap();
            let names: Vec<_> = s.spans.iter().map(|span| span.name.as_str()).collect();
            (scope.name.as_str(), scope.version.as_str(), names)
        })
        .collect();
    assert_eq!(
        scopes,
        [
            ("flask", "0.66b1", vec!["GET /users/<id>", "second"]),
            ("sqlite3", "", vec!["SELECT"]),
        ]
    );
    assert_eq!(web.scope_spans[0].schema_url, "s");
    assert_eq!(
        get(&web.scope_spans[0].scope.as_ref().unwrap().attributes, "k"),
        &value(Value::StringValue("v".into()))
    );
    let other = &resources[1];
    assert_eq!(other.scope_spans.len(), 1);
    assert_eq!(other.scope_spans[0].spans[0].name, "other");

    let first = &web.scope_spans[0].spans[0];
    assert_eq!(
        first.trace_id,
        crate::telemetry::hex::decode::<16>(TRACE).unwrap()
    );
    assert_eq!(
        first.span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
    );
    assert!(first.parent_span_id.is_empty());
    assert_eq!((first.flags, first.kind), (257, 2));
    assert_eq!(
        (first.start_time_unix_nano, first.end_time_unix_nano),
        (10, 20)
    );
    assert_eq!(
        first.status, None,
        "an unset status with no message is left out"
    );
    let child = &web.scope_spans[1].spans[0];
    assert_eq!(child.parent_span_id, first.span_id);
}

#[test]
fn every_field_of_a_span_is_read() {
    let body = format!(
        r#"[1,[[{{}},"",0]],[["s","","",{{}}]],
        [[0,0,"{TRACE}","00000000000000AB","","k=v",769,"n",5,1700000000000000000,1700000000000000500,
          {{"s":"text","b":true,"i":-7,"f":1.0,"e":2.5e3,"big":18446744073709551615,
            "a":["x","y"],"ints":[1,2],"none":null,"kv":{{"inner":3}}}},
          3,
          [[1700000000000000100,"exception",{{"exception.type":"ValueError"}},1]],
          4,
          [["0af7651916cd43dd8448eb211c80319c","b7ad6b7169203331","t=1",{{"l":1}},256,5]],
          6,
          2,"boom"]]]"#
    );
    let resources = resources(body.as_bytes(), Form::Json).unwrap();
    let span = &resources[0].scope_spans[0].spans[0];
    assert_eq!(
        span.span_id,
        [0, 0, 0, 0, 0, 0, 0, 0xab],
        "upper-case hex is read"
    );
    assert_eq!(span.trace_state, "k=v");
    assert_eq!((span.flags, span.kind), (769, 5));
    assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 500);
    let a = &span.attributes;
    assert_eq!(get(a, "s"), &value(Value::StringValue("text".into())));
    assert_eq!(get(a, "b"), &value(Value::BoolValue(true)));
    assert_eq!(get(a, "i"), &value(Value::IntValue(-7)));
    assert_eq!(
        get(a, "f"),
        &value(Value::DoubleValue(1.0)),
        "1.0 stays a double"
    );
    assert_eq!(get(a, "e"), &value(Value::DoubleValue(2500.0)));
    assert_eq!(
        get(a, "big"),
        &value(Value::DoubleValue(18446744073709551615.0)),
        "beyond i64 an integer is a double"
    );
    let strings = |v: &[&str]| {
        v.iter()
            .map(|s| AnyValue {
                value: Some(Value::StringValue((*s).into())),
            })
            .collect()
    };
    assert_eq!(
        get(a, "a"),
        &value(Value::ArrayValue(ArrayValue {
            values: strings(&["x", "y"])
        }))
    );
    assert_eq!(get(a, "none"), &Some(AnyValue { value: None }));
    assert_eq!(
        get(a, "kv"),
        &value(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "inner".into(),
                value: value(Value::IntValue(3)),
                ..Default::default()
            }]
        }))
    );
    assert_eq!(a.len(), 10, "attributes keep every key");
    assert_eq!(span.dropped_attributes_count, 3);
    assert_eq!(span.events.len(), 1);
    let event = &span.events[0];
    assert_eq!(
        (
            event.time_unix_nano,
            event.name.as_str(),
            event.dropped_attributes_count
        ),
        (1700000000000000100, "exception", 1)
    );
    assert_eq!(
        get(&event.attributes, "exception.type"),
        &value(Value::StringValue("ValueError".into()))
    );
    assert_eq!(span.dropped_events_count, 4);
    let link = &span.links[0];
    assert_eq!(link.trace_id.len(), 16);
    assert_eq!(link.span_id.len(), 8);
    assert_eq!(
        (
            link.trace_state.as_str(),
            link.flags,
            link.dropped_attributes_count
        ),
        ("t=1", 256, 5)
    );
    assert_eq!(span.dropped_links_count, 6);
    let status = span.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "boom"));
}

#[test]
fn hostile_bodies_are_refused_with_a_reason() {
    let span = |ids: &str| {
        format!(
            r#"[1,[[{{}},"",0]],[["s","","",{{}}]],[[{ids},"",1,"n",1,1,2,{{}},0,[],0,[],0,0,""]]]"#
        )
    };
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_attribute = format!(
        r#"[1,[[{{"a":{}1{}}},"",0]],[],[]]"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let cases = [
        (String::new(), "EOF"),
        ("{}".to_owned(), "invalid type"),
        ("[2,[],[],[]]".to_owned(), "version 2"),
        ("[1,[],[]]".to_owned(), "invalid length"),
        ("[1,[],[],[],5]".to_owned(), "trailing"),
        (span(&format!(r#"0,0,"{TRACE}","xyz","""#)), "span id `xyz`"),
        (span(r#"0,0,"00","0000000000000001","""#), "trace id `00`"),
        (
            span(&format!(r#"1,0,"{TRACE}","0000000000000001","""#)),
            "resource 1 of 1",
        ),
        (
            span(&format!(r#"0,3,"{TRACE}","0000000000000001","""#)),
            "scope 3 of 1",
        ),
        (
            span(&format!(r#"0,0,"{TRACE}","0000000000000001","zz""#)),
            "parent span id",
        ),
        (
            r#"[1,[[{"a":1},"",0]],[],[]] "#.replace("{\"a\":1}", "{\"a\":1,}"),
            "trailing comma",
        ),
        (
            r#"[1,[[{"a":"\ud800"},"",0]],[],[]]"#.to_owned(),
            "hex escape",
        ),
        (r#"[1,[[{"a":1},"",-1]],[],[]]"#.to_owned(), "invalid value"),
        (deep, "expected u32"),
        (deep_attribute, "recursion limit"),
    ];
    for (body, why) in cases {
        let error = resources(body.as_bytes(), Form::Json).expect_err(&body[..body.len().min(80)]);
        assert!(error.contains(why), "{why}: {error}");
    }
}

#[test]
fn a_resource_without_spans_is_left_out() {
    let resources = resources(
        br#"[1,[[{"service.name":"idle"},"",0]],[["s","","",{}]],[]]"#,
        Form::Json,
    )
    .unwrap();
    assert!(resources.is_empty());
}

#[test]
fn many_resources_and_scopes_cost_only_what_the_spans_name() {
    // A body of 16 MiB lists up to about a million of each: their pairs must not
    // be laid out in full.
    let n = 200_000;
    let body = format!(
        r#"[1,[{}],[{}],[[{last},{last},"5b8efff798038103d269b633813fc60c","0000000000000001","","",1,"n",1,1,2,{{}},0,[],0,[],0,0,""]]]"#,
        vec![r#"[{},"",0]"#; n].join(","),
        vec![r#"["s","","",{}]"#; n].join(","),
        last = n - 1
    );
    let resources = resources(body.as_bytes(), Form::Json).unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].scope_spans.len(), 1);
}

/// A Python value, for writing marshal data of version 2 by the layout
/// `marshal.rs` documents (independently of how it reads it).
enum Py<'a> {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Tuple(Vec<Py<'a>>),
    List(Vec<Py<'a>>),
    Dict(Vec<(&'a str, Py<'a>)>),
}

impl Py<'_> {
    fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.put(&mut out);
        out
    }

    fn put(&self, out: &mut Vec<u8>) {
        let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as i32).to_le_bytes());
        match self {
            Py::None => out.push(b'N'),
            Py::Bool(v) => out.push(if *v { b'T' } else { b'F' }),
            Py::Int(v) => {
                if let Ok(small) = i32::try_from(*v) {
                    out.push(b'i');
                    out.extend_from_slice(&small.to_le_bytes());
                } else {
                    let mut rest = v.unsigned_abs();
                    let mut digits = Vec::new();
                    while rest > 0 {
                        digits.push((rest & 0x7fff) as u16);
                        rest >>= 15;
                    }
                    out.push(b'l');
                    let count = digits.len() as i32;
                    out.extend_from_slice(&(if *v < 0 { -count } else { count }).to_le_bytes());
                    for digit in digits {
                        out.extend_from_slice(&digit.to_le_bytes());
                    }
                }
            }
            Py::Float(v) => {
                out.push(b'g');
                out.extend_from_slice(&v.to_le_bytes());
            }
            Py::Str(v) => {
                out.push(b'u');
                len(out, v.len());
                out.extend_from_slice(v.as_bytes());
            }
            Py::Bytes(v) => {
                out.push(b's');
                len(out, v.len());
                out.extend_from_slice(v);
            }
            Py::Tuple(items) | Py::List(items) => {
                out.push(if matches!(self, Py::Tuple(_)) {
                    b'('
                } else {
                    b'['
                });
                len(out, items.len());
                for item in items {
                    item.put(out);
                }
            }
            Py::Dict(entries) => {
                out.push(b'{');
                for (key, value) in entries {
                    Py::Str(key).put(out);
                    value.put(out);
                }
                out.push(b'0');
            }
        }
    }
}

/// A span as the shim's `_compact_spans` builds it, in both forms.
fn span_py<'a>(span_id: &'a str, attributes: Vec<(&'a str, Py<'a>)>) -> Py<'a> {
    use Py::*;
    Tuple(vec![
        Int(0),
        Int(0),
        Str(TRACE),
        Str(span_id),
        Str(""),
        Str("k=v"),
        Int(0x301),
        Str("GET /users/<int:id>"),
        Int(2),
        Int(1_764_800_000_000_000_000),
        Int(1_764_800_000_000_500_000),
        Dict(attributes),
        Int(1),
        Tuple(vec![Tuple(vec![
            Int(1_764_800_000_000_100_000),
            Str("exception"),
            Dict(vec![("exception.type", Str("ValueError"))]),
            Int(0),
        ])]),
        Int(0),
        List(vec![Tuple(vec![
            Str(TRACE),
            Str("00f067aa0ba902b7"),
            Str(""),
            Dict(vec![]),
            Int(0x101),
            Int(0),
        ])]),
        Int(0),
        Int(2),
        Str("boom"),
    ])
}

#[test]
fn a_marshalled_batch_reads_as_its_json_twin() {
    use Py::*;
    let attributes = || {
        vec![
            ("http.method", Str("GET")),
            ("net.host.port", Int(8000)),
            ("ratio", Float(0.25)),
            ("ok", Bool(true)),
            ("tags", Tuple(vec![Str("a"), Str("b")])),
            ("nested", Dict(vec![("x", Int(-3))])),
            ("nothing", None),
            ("large", Int(1 << 40)),
        ]
    };
    let batch = Tuple(vec![
        Int(1),
        List(vec![Tuple(vec![
            Dict(vec![("service.name", Str("web"))]),
            Str(""),
            Int(0),
        ])]),
        List(vec![Tuple(vec![
            Str("flask"),
            Str("0.66b1"),
            Str(""),
            Dict(vec![]),
        ])]),
        List(vec![span_py("eee19b7ec3c1b174", attributes())]),
    ]);
    let json = format!(
        r#"[1,[[{{"service.name":"web"}},"",0]],[["flask","0.66b1","",{{}}]],
        [[0,0,"{TRACE}","eee19b7ec3c1b174","","k=v",769,"GET /users/<int:id>",2,1764800000000000000,1764800000000500000,
          {{"http.method":"GET","net.host.port":8000,"ratio":0.25,"ok":true,"tags":["a","b"],"nested":{{"x":-3}},"nothing":null,"large":1099511627776}},
          1,[[1764800000000100000,"exception",{{"exception.type":"ValueError"}},0]],0,
          [["{TRACE}","00f067aa0ba902b7","",{{}},257,0]],0,2,"boom"]]]"#
    );
    let from_json = resources(json.as_bytes(), Form::Json).unwrap();
    let from_marshal = resources(&batch.marshal(), Form::Marshal).unwrap();
    assert_eq!(from_marshal, from_json);
    let span = &from_marshal[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "GET /users/<int:id>");
    assert_eq!(span.events[0].name, "exception");
    assert_eq!(
        span.links[0].span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
}

#[test]
fn marshal_carries_what_json_cannot() {
    use Py::*;
    let batch = Tuple(vec![
        Int(1),
        List(vec![Tuple(vec![Dict(vec![]), Str(""), Int(0)])]),
        List(vec![Tuple(vec![Str("s"), Str(""), Str(""), Dict(vec![])])]),
        List(vec![span_py(
            "0000000000000001",
            vec![
                ("raw", Bytes(b"\x00\xff")),
                ("nan", Float(f64::NAN)),
                ("huge", Int(1 << 80)),
            ],
        )]),
    ]);
    let read = resources(&batch.marshal(), Form::Marshal).unwrap();
    let attributes = &read[0].scope_spans[0].spans[0].attributes;
    assert_eq!(
        get(attributes, "raw"),
        &value(Value::BytesValue(vec![0, 255]))
    );
    match get(attributes, "nan") {
        Some(AnyValue {
            value: Some(Value::DoubleValue(v)),
        }) => assert!(v.is_nan()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        get(attributes, "huge"),
        &value(Value::DoubleValue(2f64.powi(80)))
    );
}

#[test]
fn hostile_marshal_batches_are_refused_with_a_reason() {
    use Py::*;
    let empty_lists = |spans: Vec<Py<'static>>| {
        Tuple(vec![
            Int(1),
            List(vec![Tuple(vec![Dict(vec![]), Str(""), Int(0)])]),
            List(vec![Tuple(vec![Str("s"), Str(""), Str(""), Dict(vec![])])]),
            List(spans),
        ])
        .marshal()
    };
    let mut short = empty_lists(vec![span_py("0000000000000001", vec![])]);
    short.truncate(short.len() - 3);
    let mut version_two = empty_lists(vec![]);
    version_two[6] = 2;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (short, "ends early"),
        (version_two, "encoding version 2"),
        (empty_lists(vec![Tuple(vec![Int(0)])]), "invalid length"),
        (
            empty_lists(vec![span_py("zz", vec![])]),
            "is not 16 hex digits",
        ),
        (
            empty_lists(vec![span_py(
                "0000000000000001",
                vec![("k", Tuple(vec![Bytes(b"x"), List(vec![])]))],
            )]),
            "",
        ),
        (
            b"(\x04\x00\x00\x00i\x01\x00\x00\x00)\x00".to_vec(),
            "marshal type ')'",
        ),
    ];
    for (body, why) in cases {
        match resources(&body, Form::Marshal) {
            Err(error) => assert!(error.contains(why), "{why}: {error}"),
            // Bytes within an array value are a value like any other.
            Ok(read) => assert!(why.is_empty(), "{why}: read {read:?}"),
        }
    }
}
