//! The database role doclink connects as, against the roles the migrations made
//! (migration 20261206000004): `run` refuses a role that could rewrite history, and
//! `doctor` reports what the role may do.

use super::{AuditError, AuditLog};
use sqlx::Row;

/// The audit tables: a role that may delete from, truncate or owns any of these
/// could rewrite the evidence.
pub const AUDIT_TABLES: &[&str] = &[
    "links",
    "link_attempts",
    "revocations",
    "rejections",
    "rejection_retries",
    "delivery_events",
    "link_access",
    "audit_journal",
    "audit_seals",
];

/// What the connected role may do to the audit tables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolePrivileges {
    pub role: String,
    /// The login the session began as (`session_user`), when it differs from the
    /// role: reached by SET ROLE (a pooler, `options=-c role=...`). The audit
    /// triggers trust the login, and the login could RESET ROLE.
    pub login: Option<String>,
    pub superuser: bool,
    /// May create roles (and so grant itself the owner's).
    pub create_role: bool,
    /// Owns the database (and so may create objects in it).
    pub owns_database: bool,
    /// May create objects in the schema (functions that could stand in for
    /// doclink's own).
    pub creates_in_schema: bool,
    /// The role prefix the migrations used (`audit_settings`), when migrated.
    pub prefix: Option<String>,
    /// The doclink group roles this role is a member of (owner, writer, ...).
    pub member_of: Vec<String>,
    /// Audit tables this role owns (or is a member of the owner of).
    pub owns: Vec<String>,
    /// Audit tables this role may DELETE from or TRUNCATE.
    pub may_delete: Vec<String>,
    /// What the daemon needs and this role lacks (INSERT on links, ...).
    pub lacks: Vec<String>,
}

impl RolePrivileges {
    /// True when this role could delete or rewrite what happened.
    pub fn may_rewrite_history(&self) -> bool {
        self.superuser
            || self.login.is_some()
            || self.create_role
            || self.owns_database
            || self.creates_in_schema
            || !self.owns.is_empty()
            || !self.may_delete.is_empty()
    }

    /// Why this role could rewrite history, in one sentence; None when it cannot.
    pub fn danger(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(login) = &self.login {
            reasons.push(format!(
                "was set by SET ROLE from the login {login} (which could RESET ROLE, and whose role the audit triggers judge)"
            ));
        }
        if self.superuser {
            reasons.push("is a superuser".to_string());
        }
        if self.create_role {
            reasons.push("may create roles (and grant itself the owner's)".to_string());
        }
        if self.owns_database {
            reasons.push("owns the database".to_string());
        }
        if self.creates_in_schema {
            reasons.push("may create objects in schema public".to_string());
        }
        if !self.owns.is_empty() {
            reasons.push(format!("owns {}", self.owns.join(", ")));
        }
        if !self.may_delete.is_empty() {
            reasons.push(format!("may delete from {}", self.may_delete.join(", ")));
        }
        (!reasons.is_empty()).then(|| {
            format!(
                "the database role {} {}, so it could delete or rewrite the audit log",
                self.role,
                reasons.join(" and ")
            )
        })
    }

    /// The writer group role's name (with the migrations' prefix).
    pub fn writer_role(&self) -> String {
        format!("{}writer", self.prefix.as_deref().unwrap_or("doclink_"))
    }
}

impl AuditLog {
    /// Reads what the connected role may do. The tables must exist (migrated).
    pub async fn role_privileges(&self) -> Result<RolePrivileges, AuditError> {
        let row = sqlx::query(
            "SELECT current_user::text AS role, nullif(session_user, current_user)::text AS login, r.rolsuper AS superuser, r.rolcreaterole AS create_role,
                    pg_has_role(current_user, d.datdba, 'MEMBER') AS owns_database,
                    has_schema_privilege('public', 'CREATE') AS creates_in_schema,
                    (SELECT role_prefix FROM public.audit_settings) AS prefix
             FROM pg_roles r, pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await;
        // Before the roles migration there is no audit_settings table.
        let row = match row {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                sqlx::query(
                    "SELECT current_user::text AS role, nullif(session_user, current_user)::text AS login, r.rolsuper AS superuser, r.rolcreaterole AS create_role,
                            pg_has_role(current_user, d.datdba, 'MEMBER') AS owns_database,
                            has_schema_privilege('public', 'CREATE') AS creates_in_schema,
                            NULL::text AS prefix
                     FROM pg_roles r, pg_database d
                     WHERE r.rolname = current_user AND d.datname = current_database()",
                )
                .fetch_one(&self.pool)
                .await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut privileges = RolePrivileges {
            role: row.try_get("role")?,
            login: row.try_get("login")?,
            superuser: row.try_get("superuser")?,
            create_role: row.try_get("create_role")?,
            owns_database: row.try_get("owns_database")?,
            creates_in_schema: row.try_get("creates_in_schema")?,
            prefix: row.try_get("prefix")?,
            ..RolePrivileges::default()
        };
        let tables = sqlx::query(
            "SELECT c.relname::text AS name,
                    pg_has_role(current_user, c.relowner, 'MEMBER') AS owns,
                    has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE') AS may_delete
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
             JOIN pg_class c ON c.oid = to_regclass(t.name)
             ORDER BY t.n",
        )
        .bind(AUDIT_TABLES)
        .fetch_all(&self.pool)
        .await?;
        for t in &tables {
            let name: String = t.try_get("name")?;
            if t.try_get("owns")? {
                privileges.owns.push(name.clone());
            }
            if t.try_get("may_delete")? {
                privileges.may_delete.push(name);
            }
        }
        if let Some(prefix) = &privileges.prefix {
            let groups: Vec<String> = sqlx::query_scalar(
                "SELECT r.rolname::text FROM pg_roles r
                 WHERE r.rolname = ANY($1) AND pg_has_role(current_user, r.oid, 'MEMBER')
                 ORDER BY r.rolname",
            )
            .bind(
                ["owner", "writer", "auditor", "retention"]
                    .map(|g| format!("{prefix}{g}"))
                    .to_vec(),
            )
            .fetch_all(&self.pool)
            .await?;
            privileges.member_of = groups;
        }
        let lacks: Vec<String> = sqlx::query_scalar(
            "SELECT what FROM (VALUES
                ('INSERT on links', has_table_privilege('links', 'INSERT')),
                ('INSERT on link_attempts', has_table_privilege('link_attempts', 'INSERT')),
                ('INSERT on rejections', has_table_privilege('rejections', 'INSERT')),
                ('INSERT on delivery_events', has_table_privilege('delivery_events', 'INSERT')),
                ('INSERT on link_access', has_table_privilege('link_access', 'INSERT')),
                ('UPDATE of links.status', has_column_privilege('links', 'status', 'UPDATE')),
                ('UPDATE of link_attempts.outcome', has_column_privilege('link_attempts', 'outcome', 'UPDATE')),
                ('EXECUTE on audit_seal()', to_regprocedure('audit_seal()') IS NOT NULL
                    AND has_function_privilege('audit_seal()', 'EXECUTE'))
             ) AS need(what, granted) WHERE NOT granted",
        )
        .fetch_all(&self.pool)
        .await?;
        privileges.lacks = lacks;
        Ok(privileges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_cannot_rewrite_history_and_an_owner_or_superuser_can() {
        let writer = RolePrivileges {
            role: "w".into(),
            ..RolePrivileges::default()
        };
        assert!(!writer.may_rewrite_history());
        assert_eq!(writer.danger(), None);
        let owner = RolePrivileges {
            role: "o".into(),
            owns: vec!["links".into()],
            may_delete: vec!["links".into()],
            ..RolePrivileges::default()
        };
        assert!(owner.may_rewrite_history());
        assert_eq!(
            owner.danger().unwrap(),
            "the database role o owns links and may delete from links, so it could delete or rewrite the audit log"
        );
        let superuser = RolePrivileges {
            role: "s".into(),
            superuser: true,
            ..RolePrivileges::default()
        };
        assert!(superuser.danger().unwrap().contains("is a superuser"));
    }
}
