//! The statement rules (`tdsql_dsql_local::rules`): every refusal with DSQL's SQLSTATE and text,
//! every supported construct with its kind, probes and `ASYNC` rewrites run on the real
//! PostgreSQL (`source /work/serve.env` or set `TDSQL_TEST_PG_URL`).

use tdsql_dsql_local::rules::{AsyncJob, Kind, Probe, Statement, analyze};
use tokio_postgres::types::ToSql;

/// A bound parameter of a probe case.
type Param = Box<dyn ToSql + Sync + Send>;

/// Analyses text that must be exactly one statement.
fn one(sql: &str) -> Statement {
    let mut statements = analyze(sql);
    assert_eq!(statements.len(), 1, "`{sql}` should be one statement, got {statements:#?}");
    statements.remove(0)
}

/// (statement, SQLSTATE, message): one case per rule and limit.
const REFUSALS: &[(&str, &str, &str)] = &[
    ("TRUNCATE TABLE t", "0A000", "unsupported statement: Truncate"),
    ("TRUNCATE t, u CASCADE", "0A000", "unsupported statement: Truncate"),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", "0A000", "unsupported statement: CreateExtension"),
    ("CREATE TRIGGER trg AFTER INSERT ON t EXECUTE FUNCTION f()", "0A000", "CREATE TRIGGER not supported"),
    (
        "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()",
        "0A000",
        "unsupported statement: CreateEventTrig",
    ),
    ("CREATE DATABASE other", "0A000", "unsupported statement: Createdb"),
    ("DROP DATABASE other", "0A000", "unsupported statement: Dropdb"),
    ("CREATE TEMPORARY TABLE tt (id int)", "0A000", "TEMPORARY or TEMP table not supported for CREATE TABLE"),
    ("CREATE TEMP TABLE tt (id int)", "0A000", "TEMPORARY or TEMP table not supported for CREATE TABLE"),
    ("CREATE UNLOGGED TABLE tu (id int)", "0A000", "UNLOGGED table not supported for CREATE TABLE"),
    (
        "CREATE TABLE p (id int, d date) PARTITION BY RANGE (d)",
        "0A000",
        "PARTITION BY not supported for CREATE TABLE",
    ),
    (
        "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')",
        "0A000",
        "PARTITION OF not supported for CREATE TABLE",
    ),
    ("CREATE TABLE c (x int) INHERITS (p)", "0A000", "INHERITS not supported for CREATE TABLE"),
    ("CREATE TABLE ts (x int) TABLESPACE fast", "0A000", "TABLESPACE not supported for CREATE TABLE"),
    ("CREATE TABLE s (id serial PRIMARY KEY)", "42704", "type \"serial\" does not exist"),
    ("CREATE TABLE s (id bigserial PRIMARY KEY)", "42704", "type \"bigserial\" does not exist"),
    ("CREATE TABLE s (id SMALLSERIAL)", "42704", "type \"smallserial\" does not exist"),
    ("CREATE TABLE s (id serial8)", "42704", "type \"serial8\" does not exist"),
    ("ALTER TABLE t ADD COLUMN s serial", "42704", "type \"serial\" does not exist"),
    ("CREATE TABLE ty (v money)", "0A000", "datatype money not supported"),
    ("CREATE TABLE ty (v xml)", "0A000", "datatype xml not supported"),
    ("CREATE TABLE ty (v inet)", "0A000", "datatype inet not supported"),
    ("CREATE TABLE ty (v cidr)", "0A000", "datatype cidr not supported"),
    ("CREATE TABLE ty (v macaddr)", "0A000", "datatype macaddr not supported"),
    ("CREATE TABLE ty (v point)", "0A000", "datatype point not supported"),
    ("CREATE TABLE ty (v polygon)", "0A000", "datatype polygon not supported"),
    ("CREATE TABLE ty (v tsvector)", "0A000", "datatype tsvector not supported"),
    ("CREATE TABLE ty (v tsquery)", "0A000", "datatype tsquery not supported"),
    ("CREATE TABLE ty (v int4range)", "0A000", "datatype int4range not supported"),
    ("CREATE TABLE ty (v tstzrange)", "0A000", "datatype tstzrange not supported"),
    ("CREATE TABLE ty (v bit(8))", "0A000", "datatype bit not supported"),
    ("CREATE TABLE ty (v varbit(8))", "0A000", "datatype bit varying not supported"),
    ("CREATE TABLE ty (v bit varying(8))", "0A000", "datatype bit varying not supported"),
    ("CREATE TABLE ty (v pg_lsn)", "0A000", "datatype pg_lsn not supported"),
    ("CREATE TABLE ty (v int[])", "0A000", "datatype integer[] not supported"),
    ("CREATE TABLE ty (v text[])", "0A000", "datatype text[] not supported"),
    ("CREATE TABLE ty (v varchar(20)[])", "0A000", "datatype character varying[] not supported"),
    ("CREATE TABLE ty (v bigint ARRAY)", "0A000", "datatype bigint[] not supported"),
    ("ALTER TABLE t ADD COLUMN bad_money money", "0A000", "datatype money not supported"),
    ("ALTER TABLE t ADD COLUMN bad_array text[]", "0A000", "datatype text[] not supported"),
    ("CREATE DOMAIN d AS money", "0A000", "datatype money not supported"),
    ("CREATE TABLE k (id bytea PRIMARY KEY)", "0A000", "datatype bytea is not supported in a key"),
    ("CREATE TABLE k (id bytea UNIQUE)", "0A000", "datatype bytea is not supported in a key"),
    (
        "CREATE TABLE k (a int, b bytea, PRIMARY KEY (a, b))",
        "0A000",
        "datatype bytea is not supported in a key",
    ),
    (
        "CREATE TABLE k (a int, b bytea, CONSTRAINT u UNIQUE (b))",
        "0A000",
        "datatype bytea is not supported in a key",
    ),
    ("CREATE TABLE k (id jsonb PRIMARY KEY)", "0A000", "datatype jsonb is not supported in a key"),
    (
        "CREATE TABLE l (v varchar(65536))",
        "54000",
        "Datatype limit greater than 65535 bytes not supported for varchar",
    ),
    (
        "CREATE TABLE l (v character varying(100000))",
        "54000",
        "Datatype limit greater than 65535 bytes not supported for varchar",
    ),
    (
        "CREATE TABLE l (v char(4097))",
        "54000",
        "Datatype limit greater than 4096 bytes not supported for char",
    ),
    (
        "ALTER TABLE t ADD COLUMN v varchar(70000)",
        "54000",
        "Datatype limit greater than 65535 bytes not supported for varchar",
    ),
    (
        "CREATE SEQUENCE s",
        "0A000",
        "CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "CREATE SEQUENCE s CACHE 100",
        "0A000",
        "CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "CREATE SEQUENCE s CACHE 65535",
        "0A000",
        "CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "ALTER SEQUENCE s CACHE 10",
        "0A000",
        "ALTER SEQUENCE is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, value text)",
        "0A000",
        "identity column is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "CREATE TABLE i (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 2))",
        "0A000",
        "identity column is not supported without an explicit cache size. please define CACHE greater than or equal to 65536 or equal to 1",
    ),
    (
        "CREATE TABLE i (id integer GENERATED BY DEFAULT AS IDENTITY (CACHE 1) PRIMARY KEY)",
        "0A000",
        "datatype integer not supported, identity column type must be bigint",
    ),
    (
        "CREATE TABLE i (id smallint GENERATED BY DEFAULT AS IDENTITY (CACHE 1) PRIMARY KEY)",
        "0A000",
        "datatype smallint not supported, identity column type must be bigint",
    ),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x", "0A000", "unsupported statement: CreateTableAs"),
    ("CREATE TABLE ctas AS SELECT 1 AS x", "0A000", "unsupported statement: CreateTableAs"),
    ("SELECT 1 AS x INTO new_table", "0A000", "unsupported statement: CreateTableAs"),
    ("REFRESH MATERIALIZED VIEW mv", "0A000", "unsupported statement: RefreshMatView"),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok')", "0A000", "CREATE TYPE not supported"),
    ("CREATE TYPE pair AS (a int, b int)", "0A000", "unsupported statement: CompositeType"),
    ("CREATE TYPE r AS RANGE (subtype = int4)", "0A000", "unsupported statement: CreateRange"),
    ("CREATE TYPE shell", "0A000", "CREATE TYPE not supported"),
    ("ALTER TYPE mood ADD VALUE 'meh'", "0A000", "ALTER TYPE not supported"),
    ("ALTER TYPE mood RENAME TO mood2", "0A000", "unsupported object in RENAME statement"),
    ("DROP TYPE IF EXISTS mood", "0A000", "unsupported object in DROP statement"),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "0A000",
        "CREATE FUNCTION with language plpgsql not supported",
    ),
    (
        "CREATE FUNCTION f() RETURNS int AS 'f' LANGUAGE c",
        "0A000",
        "CREATE FUNCTION with language c not supported",
    ),
    ("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$", "0A000", "PROCEDURE is not supported"),
    ("DO $$ BEGIN END $$", "0A000", "unsupported statement: Do"),
    ("CREATE TABLESPACE ts LOCATION '/tmp/ts'", "0A000", "unsupported statement: CreateTableSpace"),
    ("CREATE FOREIGN TABLE ft (id int) SERVER srv", "0A000", "unsupported statement: CreateForeignTable"),
    ("VACUUM t", "0A000", "unsupported VACUUM statement"),
    ("VACUUM FULL", "0A000", "unsupported VACUUM statement"),
    ("LISTEN chan", "0A000", "unsupported statement: Listen"),
    ("NOTIFY chan", "0A000", "unsupported statement: Notify"),
    ("UNLISTEN chan", "0A000", "unsupported statement: Unlisten"),
    ("ALTER SYSTEM SET work_mem = '4MB'", "0A000", "unsupported statement: AlterSystem"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "0A000", "unsupported statement: Lock"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "0A000", "unsupported statement: Merge"),
    ("SAVEPOINT sp", "0A000", "unsupported transaction statement: SAVEPOINT"),
    ("RELEASE SAVEPOINT sp", "0A000", "unsupported transaction statement: RELEASE"),
    ("ROLLBACK TO SAVEPOINT sp", "0A000", "unsupported transaction statement: ROLLBACK TO"),
    ("PREPARE TRANSACTION 'x'", "0A000", "unsupported transaction statement: PREPARE TRANSACTION"),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", "0A000", "Unsupported isolation level: SERIALIZABLE"),
    (
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "0A000",
        "Unsupported isolation level: READ COMMITTED",
    ),
    (
        "BEGIN READ ONLY, ISOLATION LEVEL READ UNCOMMITTED",
        "0A000",
        "Unsupported isolation level: READ UNCOMMITTED",
    ),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "0A000", "Unsupported isolation level: SERIALIZABLE"),
    (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "0A000",
        "setting configuration parameter \"TRANSACTION\" not supported",
    ),
    ("SET TRANSACTION READ ONLY", "0A000", "setting configuration parameter \"TRANSACTION\" not supported"),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "0A000",
        "setting configuration parameter \"SESSION CHARACTERISTICS\" not supported",
    ),
    (
        "SET default_transaction_isolation = 'repeatable read'",
        "0A000",
        "setting configuration parameter \"default_transaction_isolation\" not supported",
    ),
    (
        "SET LOCAL transaction_isolation TO 'serializable'",
        "0A000",
        "setting configuration parameter \"transaction_isolation\" not supported",
    ),
    ("SET ROLE app", "0A000", "setting configuration parameter \"role\" not supported"),
    (
        "SET SESSION AUTHORIZATION app",
        "0A000",
        "setting configuration parameter \"session_authorization\" not supported",
    ),
    (
        "SELECT id FROM t WHERE id = 1 FOR SHARE",
        "0A000",
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
    ),
    (
        "SELECT id FROM t WHERE id = 1 FOR NO KEY UPDATE",
        "0A000",
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
    ),
    (
        "SELECT * FROM (SELECT id FROM t FOR SHARE) s",
        "0A000",
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
    ),
    ("SELECT name FROM t TABLESAMPLE SYSTEM (1)", "0A000", "TABLESAMPLE clause not supported"),
    ("SELECT name FROM t TABLESAMPLE SYSTEM (1) FOR SHARE", "0A000", "TABLESAMPLE clause not supported"),
    (
        "SELECT to_tsvector('english', 'hello world')",
        "42704",
        "text search configuration \"english\" does not exist",
    ),
    (
        "SELECT 1 WHERE to_tsvector('english', 'a') @@ to_tsquery('english', 'a')",
        "42704",
        "text search configuration \"english\" does not exist",
    ),
    (
        "SELECT websearch_to_tsquery('simple', 'hello world')",
        "42704",
        "text search configuration \"simple\" does not exist",
    ),
    ("SELECT line('{1,2,3}')", "0A000", "datatype line not supported"),
    ("SELECT circle('<(0,0),1>'::text)", "0A000", "datatype circle not supported"),
    ("CREATE INDEX idx ON t (value)", "0A000", "unsupported mode. please use CREATE INDEX ASYNC."),
    ("CREATE UNIQUE INDEX idx ON t (value)", "0A000", "unsupported mode. please use CREATE INDEX ASYNC."),
    ("CREATE INDEX CONCURRENTLY idx ON t (value)", "0A000", "CONCURRENTLY not supported for CREATE INDEX"),
    ("CREATE INDEX ASYNC public.idx ON t (value)", "42601", "syntax error at or near \".\""),
    (
        "CREATE INDEX ASYNC idx ON t (value DESC)",
        "0A000",
        "specifying sort order not supported for index keys",
    ),
    (
        "CREATE INDEX ASYNC idx ON t (value ASC NULLS LAST)",
        "0A000",
        "specifying sort order not supported for index keys",
    ),
    ("CREATE INDEX ASYNC idx ON t (value text_pattern_ops)", "0A000", "opclass not supported for index keys"),
    ("CREATE INDEX ASYNC idx ON t USING hash (value)", "0A000", "USING not supported for CREATE INDEX"),
    ("CREATE INDEX ASYNC idx ON t USING btree (value)", "0A000", "USING not supported for CREATE INDEX"),
    (
        "ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY (id)",
        "0A000",
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT t_uq UNIQUE (v)",
        "0A000",
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
    ),
    ("ALTER TABLE t ADD PRIMARY KEY (id)", "0A000", "unsupported ALTER TABLE ADD CONSTRAINT statement"),
    (
        "ALTER TABLE c ADD CONSTRAINT fk FOREIGN KEY (parent_id) REFERENCES p(id)",
        "0A000",
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT chk CHECK (a IS NOT NULL)",
        "0A000",
        "unsupported ALTER TABLE ADD CONSTRAINT statement",
    ),
    (
        "ALTER TABLE c VALIDATE CONSTRAINT fk",
        "0A000",
        "unsupported ALTER TABLE VALIDATE CONSTRAINT statement",
    ),
    (
        "ALTER TABLE t ALTER COLUMN a TYPE xml",
        "0A000",
        "unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement",
    ),
    (
        "ALTER TABLE t ALTER COLUMN a TYPE varchar(20)",
        "0A000",
        "unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement",
    ),
    (
        "ALTER TABLE t ALTER COLUMN a SET STATISTICS 100",
        "0A000",
        "unsupported ALTER TABLE ALTER COLUMN ... SET STATISTICS statement",
    ),
    ("ALTER TABLE t SET TABLESPACE fast", "0A000", "unsupported ALTER TABLE SET TABLESPACE statement"),
    (
        "ALTER TABLE t ADD COLUMN seq integer GENERATED BY DEFAULT AS IDENTITY (CACHE 1)",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "ALTER TABLE t ADD COLUMN seq2 bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1)",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "ALTER TABLE t ADD COLUMN nn int NOT NULL DEFAULT 0",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "ALTER TABLE t ADD COLUMN df int DEFAULT 7",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "ALTER TABLE t ADD COLUMN ck int CHECK (ck > 0)",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "ALTER TABLE t ADD COLUMN uq int UNIQUE",
        "0A000",
        "ALTER TABLE ADD COLUMN with constraint not supported",
    ),
    (
        "EXPLAIN SELECT id FROM t FOR SHARE",
        "0A000",
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
    ),
    (
        "WITH x AS (SELECT id FROM t FOR NO KEY UPDATE) SELECT * FROM x",
        "0A000",
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported",
    ),
];

#[test]
fn every_rule_answers_with_dsql_sqlstate_and_text() {
    let mut wrong = Vec::new();
    for &(sql, code, message) in REFUSALS {
        let statements = analyze(sql);
        let got = statements.first().and_then(|s| s.refusal.as_ref());
        match got {
            Some(e) if statements.len() == 1 && e.code == code && e.message == message => {}
            _ => wrong.push(format!(
                "`{sql}`: expected {code} `{message}`, got {got:?} ({} statements)",
                statements.len()
            )),
        }
    }
    assert!(wrong.is_empty(), "{} of {} rules wrong:\n{}", wrong.len(), REFUSALS.len(), wrong.join("\n"));
}

fn write(probe: Option<Probe>) -> Kind {
    Kind::Write { probe }
}

const DDL: Kind = Kind::Ddl { async_index: false };

/// Supported constructs: no refusal and the kind the engine's transaction rules need.
fn supported() -> Vec<(&'static str, Kind)> {
    vec![
        ("SELECT 1", Kind::Read),
        ("VALUES (1), (2)", Kind::Read),
        ("SHOW transaction_isolation", Kind::Read),
        ("SELECT version()", Kind::Read),
        ("WITH x AS (SELECT 1 AS n) SELECT n FROM x", Kind::Read),
        (
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT n FROM t",
            Kind::Read,
        ),
        ("SELECT p.name FROM parent p JOIN child c ON c.parent_id = p.id", Kind::Read),
        (
            "SELECT p.name FROM parent p CROSS JOIN LATERAL (SELECT count(*) FROM child c WHERE c.parent_id = p.id) AS x",
            Kind::Read,
        ),
        ("SELECT string_to_array('1,2,3', ',')", Kind::Read),
        ("SELECT '127.0.0.1'::inet", Kind::Read),
        ("SELECT to_tsvector('hello')", Kind::Read),
        ("SELECT sys.wait_for_job('x')", Kind::Read),
        ("CALL sys.wait_for_job('x')", Kind::Read),
        ("SELECT * FROM sys.jobs", Kind::Read),
        ("EXPLAIN SELECT 1", Kind::Read),
        ("EXPLAIN UPDATE t SET a = 1", Kind::Read),
        ("EXPLAIN SELECT id FROM t FOR UPDATE", Kind::Read),
        ("EXPLAIN ANALYZE SELECT 1", Kind::Read),
        ("EXPLAIN ANALYZE DELETE FROM t", write(None)),
        ("EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t VALUES (1)", write(None)),
        ("SELECT id FROM t WHERE id = 1 FOR UPDATE", write(None)),
        ("SELECT id FROM t WHERE id = 1 FOR KEY SHARE", write(None)),
        ("SELECT id FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED", write(None)),
        (
            "INSERT INTO t (id, value) VALUES ('a', 'v1') ON CONFLICT (id) DO NOTHING RETURNING value",
            write(None),
        ),
        (
            "INSERT INTO t (id, value) VALUES ('a', 'v2') ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            write(Some(Probe::Rows(1))),
        ),
        ("INSERT INTO t (id) VALUES (1), (2), (3)", write(Some(Probe::Rows(3)))),
        ("INSERT INTO t DEFAULT VALUES", write(Some(Probe::Rows(1)))),
        ("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", write(None)),
        ("WITH u AS (UPDATE t SET a = 1 RETURNING id) SELECT count(*) FROM u", write(None)),
        (
            "DELETE FROM bulk USING parent WHERE bulk.id = 1",
            write(Some(Probe::Count(
                "SELECT count(*) FROM bulk WHERE EXISTS (SELECT 1 FROM parent WHERE bulk.id = 1)".into(),
            ))),
        ),
        ("COPY t FROM STDIN", write(None)),
        ("COPY t TO STDOUT", Kind::Read),
        ("CREATE VIEW v AS SELECT 1 AS x", DDL),
        ("CREATE OR REPLACE VIEW v AS SELECT id FROM t", DDL),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", DDL),
        ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE SQL IMMUTABLE RETURN a + 1", DDL),
        ("CREATE DOMAIN mood AS text CHECK (VALUE IN ('sad', 'ok'))", DDL),
        ("CREATE DOMAIN d AS int", DDL),
        ("CREATE SEQUENCE s CACHE 1", DDL),
        ("CREATE SEQUENCE s CACHE 65536", DDL),
        ("CREATE SEQUENCE IF NOT EXISTS s START 10 CACHE 100000", DDL),
        ("ALTER SEQUENCE s RESTART WITH 5", DDL),
        ("ALTER SEQUENCE s CACHE 65536", DDL),
        (
            "CREATE TABLE i (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 65536) PRIMARY KEY, value text)",
            DDL,
        ),
        ("CREATE TABLE i (id bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 1) PRIMARY KEY)", DDL),
        ("CREATE TABLE i (id int8 GENERATED BY DEFAULT AS IDENTITY (START WITH 10 CACHE 70000))", DDL),
        (
            "CREATE TABLE child (id uuid PRIMARY KEY, parent_id uuid REFERENCES parent(id) ON DELETE CASCADE)",
            DDL,
        ),
        (
            "CREATE TABLE d (id int PRIMARY KEY, parent_id uuid REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
            DDL,
        ),
        (
            "CREATE TABLE c (a int, b text, PRIMARY KEY (a), UNIQUE (b), FOREIGN KEY (a) REFERENCES p (id))",
            DDL,
        ),
        ("CREATE TABLE b (id uuid PRIMARY KEY, data bytea, doc jsonb, j json)", DDL),
        (
            "CREATE TABLE IF NOT EXISTS ok (c_smallint smallint, c_integer integer, c_bigint bigint, c_real real, c_double double precision, c_numeric numeric(18,6), c_char character(10), c_varchar varchar(65535), c_bpchar bpchar(5), c_text text, c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval, c_bool boolean, c_uuid uuid, big char(4096))",
            DDL,
        ),
        ("CREATE TABLE e (id int, m text CHECK (m IN ('sad', 'ok')))", DDL),
        ("CREATE TABLE g (a int, b int GENERATED ALWAYS AS (a * 2) STORED)", DDL),
        ("CREATE SCHEMA app", DDL),
        ("DROP INDEX idx", DDL),
        ("DROP INDEX IF EXISTS app.idx", DDL),
        ("DROP TABLE t", DDL),
        ("DROP DOMAIN d", DDL),
        ("ALTER TABLE t ADD COLUMN extra text", DDL),
        ("ALTER TABLE t ADD COLUMN d text STORAGE PLAIN", DDL),
        ("ALTER TABLE t DROP COLUMN b", DDL),
        ("ALTER TABLE t RENAME TO t2", DDL),
        ("ALTER TABLE t RENAME COLUMN a TO b", DDL),
        ("ALTER TABLE t SET SCHEMA app", DDL),
        ("ALTER TABLE t ALTER COLUMN a SET STORAGE PLAIN", DDL),
        ("ALTER TABLE c ADD CONSTRAINT fk FOREIGN KEY (parent_id) REFERENCES p(id) NOT VALID", DDL),
        ("ALTER TABLE t ADD CONSTRAINT chk CHECK (a IS NOT NULL) NOT VALID", DDL),
        ("ALTER TABLE big ADD CONSTRAINT big_uq UNIQUE USING INDEX big_uq", DDL),
        ("GRANT SELECT ON t TO app", DDL),
        ("REVOKE SELECT ON t FROM app", DDL),
        ("GRANT USAGE ON SCHEMA app TO app", DDL),
        ("COMMENT ON TABLE t IS 'x'", DDL),
        ("CREATE ROLE app WITH LOGIN", DDL),
        ("ANALYZE t", Kind::Other),
        ("BEGIN", Kind::Begin { read_only: false }),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ", Kind::Begin { read_only: false }),
        ("START TRANSACTION READ ONLY", Kind::Begin { read_only: true }),
        ("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", Kind::Begin { read_only: true }),
        ("BEGIN READ WRITE", Kind::Begin { read_only: false }),
        ("COMMIT", Kind::Commit),
        ("END", Kind::Commit),
        ("ROLLBACK", Kind::Rollback),
        ("ABORT", Kind::Rollback),
        ("SET search_path = app, public", Kind::Session),
        ("SET application_name TO 'temporal'", Kind::Session),
        ("SET LOCAL statement_timeout = '5s'", Kind::Session),
        ("RESET ALL", Kind::Session),
        ("RESET ROLE", Kind::Session),
        ("SET CONSTRAINTS ALL DEFERRED", Kind::Session),
        ("DISCARD ALL", Kind::Session),
        ("PREPARE q AS SELECT $1::int", Kind::Session),
        ("DEALLOCATE q", Kind::Session),
        ("EXECUTE q(1)", Kind::Other),
        ("CALL some_procedure()", Kind::Other),
    ]
}

#[test]
fn supported_constructs_pass_with_their_kind() {
    let cases = supported();
    let mut wrong = Vec::new();
    for (sql, kind) in &cases {
        let statements = analyze(sql);
        match statements.as_slice() {
            [s] if s.refusal.is_none() && &s.kind == kind => {}
            _ => wrong.push(format!("`{sql}`: expected {kind:?} and no refusal, got {statements:?}")),
        }
    }
    assert!(wrong.is_empty(), "{} of {} wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn async_index_forms_are_ddl_with_async_removed_upstream() {
    let cases = [
        ("CREATE INDEX ASYNC idx ON t (value)", "CREATE INDEX idx ON t (value)"),
        ("create index async if not exists idx on t (value)", "create index if not exists idx on t (value)"),
        (
            "CREATE UNIQUE INDEX ASYNC uidx ON t (value) WHERE value <> ''",
            "CREATE UNIQUE INDEX uidx ON t (value) WHERE value <> ''",
        ),
        ("CREATE INDEX ASYNC inc ON t (value) INCLUDE (id)", "CREATE INDEX inc ON t (value) INCLUDE (id)"),
        (
            "CREATE UNIQUE INDEX ASYNC nnd ON t (value) NULLS NOT DISTINCT",
            "CREATE UNIQUE INDEX nnd ON t (value) NULLS NOT DISTINCT",
        ),
        ("CREATE INDEX ASYNC expr ON t ((lower(value)))", "CREATE INDEX expr ON t ((lower(value)))"),
        ("CREATE INDEX ASYNC ON t (value)", "CREATE INDEX ON t (value)"),
        ("CREATE INDEX Async\n  nf ON t (value NULLS FIRST)", "CREATE INDEX nf ON t (value NULLS FIRST)"),
        (
            "CREATE /* c */ INDEX /* async */ ASYNC c ON t (value)",
            "CREATE /* c */ INDEX /* async */ c ON t (value)",
        ),
    ];
    for (sql, upstream) in cases {
        let s = one(sql);
        assert_eq!(s.refusal, None, "{sql}");
        assert_eq!(s.kind, Kind::Ddl { async_index: true }, "{sql}");
        assert_eq!(s.async_job, Some(AsyncJob::IndexBuild), "{sql}");
        assert_eq!(s.upstream_sql, upstream, "{sql}");
        assert_eq!(s.span, 0..sql.len(), "{sql}");
    }
    // `async` as a string, a quoted name or a column is not the keyword.
    for sql in [
        "SELECT 'CREATE INDEX ASYNC x ON t (a)'",
        "CREATE INDEX \"async\" ON t (a)",
        "CREATE INDEX i ON t (async)",
    ] {
        let s = one(sql);
        assert_eq!(s.async_job, None, "{sql}");
        assert_eq!(s.upstream_sql, sql, "{sql}");
    }
}

#[test]
fn alter_table_async_validate_constraint_is_accepted_and_rewritten() {
    let s = one("ALTER TABLE ASYNC c VALIDATE CONSTRAINT fk");
    assert_eq!((s.refusal, s.kind, s.async_job), (None, DDL, Some(AsyncJob::ValidateConstraint)));
    assert_eq!(s.upstream_sql, "ALTER TABLE c VALIDATE CONSTRAINT fk");
    let s = one("ALTER TABLE ASYNC IF EXISTS ONLY app.c VALIDATE CONSTRAINT fk");
    assert_eq!(
        (s.refusal, s.upstream_sql.as_str()),
        (None, "ALTER TABLE IF EXISTS ONLY app.c VALIDATE CONSTRAINT fk")
    );
    // A table called `async` keeps its name.
    let s = one("ALTER TABLE async ADD COLUMN x text");
    assert_eq!(
        (s.refusal, s.async_job, s.upstream_sql.as_str()),
        (None, None, "ALTER TABLE async ADD COLUMN x text")
    );
}

#[test]
fn statements_split_with_their_spans() {
    let sql = "BEGIN; CREATE INDEX ASYNC multi_idx ON multi (a);\n  COMMIT ;  -- done\n";
    let statements = analyze(sql);
    let spans: Vec<&str> = statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(spans, ["BEGIN", "CREATE INDEX ASYNC multi_idx ON multi (a)", "COMMIT"]);
    let kinds: Vec<&Kind> = statements.iter().map(|s| &s.kind).collect();
    assert_eq!(kinds, [&Kind::Begin { read_only: false }, &Kind::Ddl { async_index: true }, &Kind::Commit]);
    assert_eq!(statements[1].upstream_sql, "CREATE INDEX multi_idx ON multi (a)");

    let sql = "SELECT 1 AS a; SELECT ';' AS b; /* x; */ TRUNCATE t";
    let statements = analyze(sql);
    let spans: Vec<&str> = statements.iter().map(|s| &sql[s.span.clone()]).collect();
    assert_eq!(
        spans,
        ["SELECT 1 AS a", "SELECT ';' AS b", "TRUNCATE t"],
        "a comment before a statement is not part of it"
    );
    assert_eq!(
        statements[2].refusal.as_ref().map(|e| e.message.as_str()),
        Some("unsupported statement: Truncate")
    );

    let sql = "CREATE TABLE m (id int); INSERT INTO m (id) VALUES (1);";
    let statements = analyze(sql);
    assert_eq!(
        statements.iter().map(|s| &sql[s.span.clone()]).collect::<Vec<_>>(),
        ["CREATE TABLE m (id int)", "INSERT INTO m (id) VALUES (1)"]
    );
    assert_eq!(statements[1].kind, write(Some(Probe::Rows(1))));

    let sql = "SELECT 'é' AS \"日本\"; -- ü\nSELECT 'ü';";
    let statements = analyze(sql);
    assert_eq!(
        statements.iter().map(|s| &sql[s.span.clone()]).collect::<Vec<_>>(),
        ["SELECT 'é' AS \"日本\"", "SELECT 'ü'"]
    );

    for empty in ["", "   ", ";", " ; ;", "-- only a comment", "/* c */"] {
        assert_eq!(analyze(empty), Vec::new(), "{empty:?}");
    }
}

#[test]
fn unparsable_text_goes_upstream_whole() {
    for sql in [
        "SELEC 1",
        "SELECT 1; SELEC 2",
        "CREATE TABLE (",
        "'unterminated",
        "SELECT $$",
        "\0",
        "SELECT * FROM",
    ] {
        let s = one(sql);
        assert_eq!((s.kind, s.refusal, s.span), (Kind::Other, None, 0..sql.len()), "{sql:?}");
        assert_eq!(s.upstream_sql, sql, "{sql:?}");
    }
}

#[test]
fn garbage_never_panics() {
    let mut seeds = vec![
        String::new(),
        "CREATE INDEX ASYNC".into(),
        "CREATE UNIQUE INDEX ASYNC IF".into(),
        "CREATE INDEX ASYNC IF NOT EXISTS".into(),
        "ALTER TABLE ASYNC".into(),
        "ALTER TABLE ASYNC x.".into(),
        "asyncasync async ASYNC".into(),
        "INSERT INTO".into(),
        "UPDATE t SET".into(),
        "SET".into(),
        "BEGIN ISOLATION".into(),
        "SELECT ((((((((((((((((((((1))))))))))))))))))))".into(),
        "é; ü; 日本語 ASYNC".into(),
        format!("SELECT {}", "(".repeat(5000)),
        format!("SELECT {}1{}", "(".repeat(900), ")".repeat(900)),
    ];
    // Deterministic pseudo-random byte soup built from SQL fragments.
    let fragments = [
        "CREATE",
        " INDEX",
        " ASYNC",
        " UNIQUE",
        " ON",
        " t",
        "(",
        ")",
        ";",
        "'",
        "\"",
        "$$",
        " SELECT",
        " FOR",
        " SHARE",
        " WITH",
        " x AS",
        " UPDATE",
        " SET",
        " a=1",
        " WHERE",
        " $1",
        ",",
        " ALTER",
        " TABLE",
        " VALIDATE",
        " CONSTRAINT",
        "--",
        "\n",
        "/*",
        "*/",
        "é",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..2000 {
        let mut text = String::new();
        for _ in 0..(state % 12) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(fragments[(state % fragments.len() as u64) as usize]);
        }
        seeds.push(text);
    }
    for sql in &seeds {
        for s in analyze(sql) {
            assert!(s.span.start <= s.span.end && s.span.end <= sql.len(), "{sql:?}: {s:?}");
        }
    }
}

#[test]
fn probes_are_built_on_the_parse_tree() {
    let cases = [
        (
            "UPDATE executions SET data = $1 WHERE shard_id = $2 AND run_id = $3",
            "SELECT count(*) FROM executions WHERE shard_id = $2 AND run_id = $3",
        ),
        ("UPDATE t AS x SET a = 1 WHERE x.id > 0 RETURNING *", "SELECT count(*) FROM t x WHERE x.id > 0"),
        ("UPDATE ONLY t SET a = 1", "SELECT count(*) FROM ONLY t"),
        (
            "UPDATE t SET a = o.a FROM other o WHERE o.id = t.id AND o.flag = $1",
            "SELECT count(*) FROM t WHERE EXISTS (SELECT 1 FROM other o WHERE o.id = t.id AND o.flag = $1)",
        ),
        ("DELETE FROM app.t WHERE id = ANY($1)", "SELECT count(*) FROM app.t WHERE id = ANY($1)"),
        (
            "DELETE FROM t d USING u, v WHERE d.id = u.id AND u.id = v.id",
            "SELECT count(*) FROM t d WHERE EXISTS (SELECT 1 FROM u, v WHERE d.id = u.id AND u.id = v.id)",
        ),
        (
            "WITH ids AS (SELECT id FROM s WHERE x = $1) DELETE FROM t WHERE id IN (SELECT id FROM ids)",
            "WITH ids AS (SELECT id FROM s WHERE x = $1) SELECT count(*) FROM t WHERE id IN (SELECT id FROM ids)",
        ),
        (
            "INSERT INTO t (a) SELECT b FROM u WHERE c = $1",
            "SELECT count(*) FROM (SELECT b FROM u WHERE c = $1) s",
        ),
        (
            "INSERT INTO t SELECT generate_series(1, 3001)",
            "SELECT count(*) FROM (SELECT generate_series(1, 3001)) s",
        ),
        (
            "INSERT INTO t (a) SELECT b FROM u ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a",
            "SELECT count(*) FROM (SELECT b FROM u) s",
        ),
    ];
    for (sql, probe) in cases {
        assert_eq!(one(sql).kind, write(Some(Probe::Count(probe.into()))), "{sql}");
    }
    assert_eq!(one("UPDATE t SET a = 1 WHERE CURRENT OF c").kind, write(None));
    assert_eq!(one("INSERT INTO t (a) VALUES ($1), ($2) ON CONFLICT DO NOTHING").kind, write(None));
    assert_eq!(
        one("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2 WHERE t.a > 5").kind,
        write(None)
    );
}

/// Each Count probe runs on the real PostgreSQL with the statement's own parameters (prepared
/// with the types PostgreSQL resolved for the statement) and returns the count the statement
/// itself then reports.
#[tokio::test]
async fn count_probes_return_what_the_write_reports() {
    let config = tdsql_test_support::fresh_database("rules_probes").await;
    let client = tdsql_test_support::connect(&config).await;
    client
        .batch_execute(
            "CREATE TABLE executions (shard_id int, run_id text, state int, data bytea);
             INSERT INTO executions SELECT i % 4, 'run-' || (i % 3), i, NULL FROM generate_series(1, 24) i;
             CREATE TABLE other (id int, flag bool);
             INSERT INTO other VALUES (1, true), (1, true), (2, false), (3, true);
             CREATE TABLE target (id int, a int);
             INSERT INTO target SELECT i, 0 FROM generate_series(1, 5) i;",
        )
        .await
        .expect("fixture");
    let id = |i: i32| Box::new(i) as Param;
    let text = |s: &str| Box::new(s.to_owned()) as Param;
    let cases: Vec<(&str, Vec<Param>, i64)> = vec![
        (
            "UPDATE executions SET data = $1, state = $2 WHERE shard_id = $3 AND run_id = $4 AND state > $5 AND state < $6",
            vec![Box::new(vec![1_u8, 2]), id(7), id(1), text("run-1"), id(0), id(100)],
            2,
        ),
        ("UPDATE executions e SET state = $1 WHERE e.shard_id = $2", vec![id(0), id(2)], 6),
        // `other` matches target 1 twice: the command tag counts it once.
        (
            "UPDATE target t SET a = o.id FROM other o WHERE o.id = t.id AND o.flag = $1",
            vec![Box::new(true)],
            2,
        ),
        (
            "DELETE FROM target USING other WHERE other.id = target.id AND other.flag = $1",
            vec![Box::new(false)],
            1,
        ),
        ("DELETE FROM executions AS x WHERE x.run_id = $1", vec![text("run-0")], 8),
        ("INSERT INTO target (id, a) SELECT id, 1 FROM other WHERE flag = $1", vec![Box::new(true)], 3),
        (
            "WITH s AS (SELECT id FROM other WHERE flag = $1) UPDATE target SET a = 9 WHERE id IN (SELECT id FROM s)",
            vec![Box::new(true)],
            2,
        ),
    ];
    for (sql, params, expected) in cases {
        let Kind::Write { probe: Some(Probe::Count(probe)) } = one(sql).kind else {
            panic!("`{sql}` has no Count probe")
        };
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let types = client.prepare(sql).await.expect("prepare the write").params().to_vec();
        let prepared = client
            .prepare_typed(&probe, &types)
            .await
            .unwrap_or_else(|e| panic!("`{probe}`: {}", tdsql_test_support::describe(&e)));
        let counted: i64 = client.query_one(&prepared, &params).await.expect("run the probe").get(0);
        client.batch_execute("BEGIN").await.expect("begin");
        let reported = client
            .execute(sql, &params)
            .await
            .unwrap_or_else(|e| panic!("`{sql}`: {}", tdsql_test_support::describe(&e)));
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert_eq!(
            (counted, reported),
            (expected, u64::try_from(expected).unwrap()),
            "`{sql}` probe `{probe}`"
        );
    }
}

/// The upstream text of every accepted async index form is accepted by the real PostgreSQL, and
/// so is the upstream of `ALTER TABLE ASYNC ... VALIDATE CONSTRAINT`.
#[tokio::test]
async fn async_index_upstream_runs_on_postgresql() {
    let config = tdsql_test_support::fresh_database("rules_async").await;
    let client = tdsql_test_support::connect(&config).await;
    client
        .batch_execute(
            "CREATE TABLE idx (id int PRIMARY KEY, value text);
             CREATE TABLE parent (id int PRIMARY KEY);
             CREATE TABLE child (id int, parent_id int);",
        )
        .await
        .expect("fixture");
    let script = [
        "CREATE INDEX ASYNC IF NOT EXISTS idx_value ON idx (value)",
        "CREATE INDEX ASYNC IF NOT EXISTS idx_value ON idx (value)",
        "CREATE INDEX ASYNC partial_idx ON idx (value) WHERE value IS NOT NULL",
        "CREATE UNIQUE INDEX ASYNC upartial_idx ON idx (value) WHERE value <> ''",
        "CREATE INDEX ASYNC expr_idx ON idx ((lower(value)))",
        "CREATE INDEX ASYNC include_idx ON idx (value) INCLUDE (id)",
        "CREATE UNIQUE INDEX ASYNC nnd_idx ON idx (value) NULLS NOT DISTINCT",
        "CREATE INDEX ASYNC ON idx (value)",
        "CREATE INDEX ASYNC nulls_idx ON idx (value NULLS FIRST)",
        "ALTER TABLE child ADD CONSTRAINT child_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID",
        "ALTER TABLE ASYNC child VALIDATE CONSTRAINT child_fk",
    ];
    for sql in script {
        let s = one(sql);
        assert_eq!(s.refusal, None, "{sql}");
        client.batch_execute(&s.upstream_sql).await.unwrap_or_else(|e| {
            panic!("`{}` (from `{sql}`): {}", s.upstream_sql, tdsql_test_support::describe(&e))
        });
    }
    let indexes: i64 = client
        .query_one("SELECT count(*) FROM pg_index WHERE indrelid = 'idx'::regclass", &[])
        .await
        .expect("count indexes")
        .get(0);
    assert_eq!(indexes, 9, "primary key + 8 indexes (IF NOT EXISTS made one of the 9 statements a no-op)");
    // PostgreSQL's own answer to a schema-qualified name is DSQL's.
    let s = one("CREATE INDEX ASYNC public.q_idx ON idx (value)");
    let error = client.batch_execute(&s.upstream_sql).await.expect_err("qualified index name");
    let db = error.as_db_error().expect("a server error");
    assert_eq!((db.code().code(), db.message()), ("42601", "syntax error at or near \".\""));
}

/// `CREATE INDEX ASYNC` on a `bytea` (or `jsonb`) column of an existing table: the catalog query
/// the engine runs names the first refused key type; allowed keys give no row.
#[tokio::test]
async fn index_key_type_check_asks_the_catalog() {
    let config = tdsql_test_support::fresh_database("rules_keys").await;
    let client = tdsql_test_support::connect(&config).await;
    client
        .batch_execute(
            "CREATE SCHEMA app;
             CREATE TABLE blobs (id int PRIMARY KEY, data bytea, doc jsonb, name text);
             CREATE TABLE app.blobs (id int PRIMARY KEY, data text, doc jsonb);",
        )
        .await
        .expect("fixture");
    let cases = [
        ("CREATE INDEX ASYNC i ON blobs (name, data)", Some("bytea")),
        ("CREATE UNIQUE INDEX ASYNC IF NOT EXISTS i ON blobs (doc, data)", Some("jsonb")),
        ("CREATE INDEX ASYNC i ON blobs (name) INCLUDE (data)", None),
        ("CREATE INDEX ASYNC i ON blobs (id, name)", None),
        ("CREATE INDEX ASYNC ON app.blobs (data)", None),
        ("CREATE INDEX ASYNC ON app.blobs (id, doc)", Some("jsonb")),
    ];
    for (sql, refused) in cases {
        let check = one(sql).key_type_check().unwrap_or_else(|| panic!("`{sql}` has a key check"));
        let rows = client
            .query(check.sql, &[&check.table, &check.schema, &check.columns])
            .await
            .unwrap_or_else(|e| panic!("`{sql}`: {}", tdsql_test_support::describe(&e)));
        let got: Option<String> = rows.first().map(|r| r.get(0));
        assert_eq!(got.as_deref(), refused, "{sql}");
    }
    assert_eq!(one("CREATE INDEX ASYNC e ON blobs ((lower(name)))").key_type_check(), None);
    assert_eq!(one("CREATE TABLE x (id int)").key_type_check(), None);
}

/// The project's own Temporal-on-DSQL schema (crates/schema) is what DSQL accepts: every
/// statement passes (DDL, and the seed row's INSERT).
#[test]
fn the_embedded_dsql_schema_passes() {
    for (file, sql) in [
        ("v1.0/schema.sql", include_str!("../../schema/sql/temporal/versioned/v1.0/schema.sql")),
        (
            "v1.1/current_chasm_executions.sql",
            include_str!("../../schema/sql/temporal/versioned/v1.1/current_chasm_executions.sql"),
        ),
    ] {
        let statements = analyze(sql);
        assert!(!statements.is_empty(), "{file}");
        for s in &statements {
            assert_eq!(s.refusal, None, "{file}: `{}`", &sql[s.span.clone()]);
            assert!(
                matches!(s.kind, Kind::Ddl { .. } | Kind::Write { .. }),
                "{file}: `{}` is {:?}",
                &sql[s.span.clone()],
                s.kind
            );
        }
        let tables = statements.iter().filter(|s| sql[s.span.clone()].starts_with("CREATE TABLE")).count();
        let indexes = statements.iter().filter(|s| s.kind == (Kind::Ddl { async_index: true })).count();
        println!("{file}: {} statements, {tables} tables, {indexes} async indexes", statements.len());
    }
}

#[test]
fn the_analysis_cache_answers_as_analyze_and_stays_bounded() {
    use tdsql_dsql_local::rules::{AnalysisCache, analyze};
    let cache = AnalysisCache::new(3);
    let texts = ["BEGIN", "SELECT 1; TRUNCATE t", "CREATE INDEX ASYNC i ON t (a)", "COMMIT"];
    for text in texts {
        assert_eq!(&*cache.analyze(text), analyze(text).as_slice(), "{text}");
    }
    // The fourth text found the cache full and started it over.
    assert_eq!(cache.len(), 1);
    let first = cache.analyze("COMMIT");
    assert!(std::sync::Arc::ptr_eq(&first, &cache.analyze("COMMIT")), "a repeated text is a hit");
    let long = format!("SELECT {}", "1 + ".repeat(AnalysisCache::MAX_TEXT / 4) + "1");
    assert_eq!(&*cache.analyze(&long), analyze(&long).as_slice());
    assert_eq!(cache.len(), 1, "a text over MAX_TEXT is not kept");
}
