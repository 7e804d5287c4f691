//! Wire types: the JSON bodies `/predict` takes and gives. Nothing below `http` sees them.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use utoipa::ToSchema;

/// Feature values kept per request; anything past this is counted, not stored, so a huge
/// array costs parse time but no memory.
pub const MAX_STORED_FEATURES: usize = 65_536;

/// `POST /predict` with a JSON body: `{"features": [..], "model": "name"?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"features": [5.1, 3.5, 1.4, 0.2]}))]
pub struct TabularRequest {
    /// The feature vector: finite numbers, in the model's order; checked element by
    /// element while parsing.
    // An `Option` only so that a body without it is answered 422, not 400.
    #[schema(value_type = Vec<f32>, required = true, min_items = 1)]
    pub features: Option<Features>,
    /// Picks a model by name; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Picks a version of the model; as its traffic split says (else its newest) when
    /// absent.
    #[serde(default)]
    pub version: Option<String>,
}

/// What was wrong with one element of `features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFeature {
    /// A string, bool, array or object where a number belongs.
    NotANumber(&'static str),
    /// A number too large for a 32-bit float, or a `"NaN"`/`"Infinity"` string.
    NotFinite,
}

/// A decoded `features` array: the values if all are finite numbers or `null` (missing),
/// else the first bad one.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Values as `f32` (NaN for a missing one), up to [`MAX_STORED_FEATURES`] of them.
    pub values: Vec<f32>,
    /// How many elements the array had.
    pub len: usize,
    /// Index and kind of the first unusable element.
    pub first_bad: Option<(usize, BadFeature)>,
    /// Index of the first `null`.
    pub first_missing: Option<usize>,
}

/// One element of the array, classified while parsing.
enum Element {
    Number(f64),
    /// `null`: a missing value.
    Missing,
    Bad(BadFeature),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ElementVisitor;
        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Element, E> {
                Ok(Element::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Element, E> {
                Ok(Element::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element, E> {
                Ok(Element::Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
                // Clients that cannot write NaN in JSON often send it as a string.
                let lowered = v.trim().to_ascii_lowercase();
                let non_finite = matches!(
                    lowered.trim_start_matches(['+', '-']),
                    "nan" | "inf" | "infinity"
                );
                Ok(Element::Bad(if non_finite {
                    BadFeature::NotFinite
                } else {
                    BadFeature::NotANumber("a string")
                }))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Element, E> {
                Ok(Element::Bad(BadFeature::NotANumber("a boolean")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
                Ok(Element::Missing)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Element::Bad(BadFeature::NotANumber("an array")))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Element::Bad(BadFeature::NotANumber("an object")))
            }
        }
        d.deserialize_any(ElementVisitor)
    }
}

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FeaturesVisitor;
        impl<'de> Visitor<'de> for FeaturesVisitor {
            type Value = Features;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Features, A::Error> {
                let mut out = Features {
                    values: Vec::with_capacity(seq.size_hint().unwrap_or(8).min(64)),
                    len: 0,
                    first_bad: None,
                    first_missing: None,
                };
                while let Some(element) = seq.next_element::<Element>()? {
                    let index = out.len;
                    out.len += 1;
                    let bad = match element {
                        Element::Number(v) => {
                            let v32 = v as f32;
                            if !v32.is_finite() {
                                Some(BadFeature::NotFinite)
                            } else {
                                if out.values.len() < MAX_STORED_FEATURES {
                                    out.values.push(v32);
                                }
                                None
                            }
                        }
                        Element::Missing => {
                            if out.values.len() < MAX_STORED_FEATURES {
                                out.values.push(f32::NAN);
                            }
                            out.first_missing.get_or_insert(index);
                            None
                        }
                        Element::Bad(kind) => Some(kind),
                    };
                    if let (Some(kind), None) = (bad, out.first_bad) {
                        out.first_bad = Some((index, kind));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(FeaturesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TabularRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integers_and_floats_are_the_same_values() {
        let a = parse(r#"{"features":[1, 2.0]}"#).unwrap().features.unwrap();
        let b = parse(r#"{"features":[1.0, 2]}"#).unwrap().features.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.values, vec![1.0, 2.0]);
    }

    #[test]
    fn bad_elements_are_classified_with_their_index() {
        let f = parse(r#"{"features":[1, "x", null]}"#)
            .unwrap()
            .features
            .unwrap();
        assert_eq!(f.first_bad, Some((1, BadFeature::NotANumber("a string"))));
        // null is a missing value, NaN to the model; whether the model takes it is for
        // later.
        let f = parse(r#"{"features":[1, null, null]}"#)
            .unwrap()
            .features
            .unwrap();
        assert_eq!((f.first_bad, f.first_missing), (None, Some(1)));
        assert!(f.values[1].is_nan() && f.values[2].is_nan());
        let f = parse(r#"{"features":[1, "NaN"]}"#)
            .unwrap()
            .features
            .unwrap();
        assert_eq!(f.first_bad, Some((1, BadFeature::NotFinite)));
        let f = parse(r#"{"features":[1e39]}"#).unwrap().features.unwrap();
        assert_eq!(f.first_bad, Some((0, BadFeature::NotFinite)));
        let f = parse(r#"{"features":[[1],{"a":2}]}"#)
            .unwrap()
            .features
            .unwrap();
        assert_eq!(f.first_bad, Some((0, BadFeature::NotANumber("an array"))));
    }

    #[test]
    fn huge_arrays_are_counted_not_stored() {
        let body = format!(
            r#"{{"features":[{}]}}"#,
            vec!["1"; MAX_STORED_FEATURES + 10].join(",")
        );
        let f = parse(&body).unwrap().features.unwrap();
        assert_eq!(f.len, MAX_STORED_FEATURES + 10);
        assert_eq!(f.values.len(), MAX_STORED_FEATURES);
    }

    #[test]
    fn features_must_be_an_array() {
        assert!(parse(r#"{"features":"1,2"}"#).is_err());
        assert!(parse(r#"{"features":{"a":1}}"#).is_err());
        assert!(parse(r#"{"model":"iris-mlp"}"#).unwrap().features.is_none());
    }
}
