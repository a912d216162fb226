//! The sessions table's name: validated once at start-up, so it can be spliced into SQL.

use satchel_core::{ConfigError, SessionConfig};

/// The longest identifier every supported database accepts (PostgreSQL stops at 63 bytes).
const MAX_IDENT: usize = 63;

/// A table name (and optional schema) made only of `[A-Za-z_][A-Za-z0-9_]{0,62}` parts.
///
/// Names are spliced into SQL text (placeholders cannot stand for identifiers), so this type is
/// the only way in: whatever is not a plain identifier is refused, and quoting stays trivial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

impl TableName {
    /// Reads `SESSION_SQLALCHEMY_TABLE` and `SESSION_SQLALCHEMY_SCHEMA`.
    pub(crate) fn from_config(config: &SessionConfig) -> Result<TableName, ConfigError> {
        let table = validate("SESSION_SQLALCHEMY_TABLE", &config.sqlalchemy_table)?;
        let schema = match &config.sqlalchemy_schema {
            Some(schema) if !schema.trim().is_empty() => {
                Some(validate("SESSION_SQLALCHEMY_SCHEMA", schema)?)
            }
            _ => None,
        };
        Ok(TableName { schema, table })
    }

    /// `"schema"."table"` with the dialect's quote character. Quoting keeps the case as given,
    /// which is what SQLAlchemy does for mixed-case names, and lets reserved words through.
    pub(crate) fn quoted(&self, quote: char) -> String {
        match &self.schema {
            Some(schema) => format!("{quote}{schema}{quote}.{quote}{}{quote}", self.table),
            None => format!("{quote}{}{quote}", self.table),
        }
    }

    /// The name of the index on `expiry`, after SQLAlchemy's `ix_<table>_<column>` convention,
    /// shortened to fit every database's identifier limit.
    pub(crate) fn expiry_index(&self) -> String {
        let mut name = format!("ix_{}_expiry", self.table);
        name.truncate(MAX_IDENT);
        name
    }

    /// `schema.table` for messages.
    pub(crate) fn display(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.table),
            None => self.table.clone(),
        }
    }
}

fn validate(setting: &'static str, value: &str) -> Result<String, ConfigError> {
    let mut bytes = value.bytes();
    let valid = value.len() <= MAX_IDENT
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::Invalid {
            setting,
            value: value.to_owned(),
            expected: format!(
                "an identifier of 1 to {MAX_IDENT} characters: a letter or `_`, then letters, \
                 digits or `_`"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(table: &str, schema: Option<&str>) -> SessionConfig {
        let mut config = SessionConfig::default();
        config.sqlalchemy_table = table.into();
        config.sqlalchemy_schema = schema.map(Into::into);
        config
    }

    #[test]
    fn plain_identifiers_are_accepted_and_quoted() {
        let name = TableName::from_config(&config("Sessions_2", Some("app"))).unwrap();
        assert_eq!(name.quoted('"'), r#""app"."Sessions_2""#);
        assert_eq!(name.quoted('`'), "`app`.`Sessions_2`");
        assert_eq!(name.expiry_index(), "ix_Sessions_2_expiry");
    }

    #[test]
    fn anything_but_an_identifier_names_the_setting() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a;drop",
            "x\"y",
            "é",
            &"a".repeat(64),
        ] {
            let err = TableName::from_config(&config(bad, None))
                .unwrap_err()
                .to_string();
            assert!(err.contains("SESSION_SQLALCHEMY_TABLE"), "{bad}: {err}");
        }
        let err = TableName::from_config(&config("sessions", Some("pub.lic")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SESSION_SQLALCHEMY_SCHEMA"), "{err}");
    }

    #[test]
    fn long_table_names_give_an_index_name_within_limits() {
        let name = TableName::from_config(&config(&"t".repeat(63), None)).unwrap();
        assert_eq!(name.expiry_index().len(), MAX_IDENT);
    }
}
