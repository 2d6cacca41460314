//! The vocabulary the API's types describe themselves in for the OpenAPI document: fixed sets of
//! strings and the examples the schemas show. Below every layer, so a domain type can describe
//! its JSON without seeing the HTTP layer.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

pub mod examples;

/// A fixed set of string values, listed as a schema's `enum`.
pub trait Strings {
    /// Every value.
    const ALL: &[&str];
    /// What the field says, for the schema (a `schema_with` field loses its doc comment).
    const DESCRIPTION: Option<&str> = None;
}

/// `{"type": "string", "enum": T::ALL}`, for a field whose values are `&'static str`s.
pub fn one_of_strings<T: Strings>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(T::ALL.iter().copied()))
        .description(T::DESCRIPTION)
        .build()
}
