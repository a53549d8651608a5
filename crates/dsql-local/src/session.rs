//! One client connection after admission: the statement engine between the client and its own
//! PostgreSQL connection.
//!
//! Every client message is looked at in order and forwarded, rewritten or answered; every upstream
//! response belongs to the oldest [`Expect`] in a queue and is passed on, rewritten or swallowed
//! by it. The central trick: a refusal the gateway decides is delivered by sending PostgreSQL a
//! *sentinel* statement that fails at that same point (`SELECT pg_catalog.dsql_local_refusal()`),
//! and replacing its error with DSQL's. PostgreSQL's own state machine then does the rest exactly
//! as DSQL's does: the explicit transaction is aborted (25P02 until it ends), an implicit one is
//! rolled back, and the extended protocol skips to the next Sync.
//!
//! Row writes are a barrier: nothing after them is forwarded until their result is in, so the
//! row limit and write-write conflicts are decided before the next statement runs. Inside an
//! explicit transaction a write runs behind a savepoint; when PostgreSQL refuses its row lock
//! (`lock_timeout`, 55P03) or finds a newer committed version (40001), the gateway rolls back to
//! the savepoint, answers the statement as if it had run (its row count from a probe query on
//! the transaction's snapshot) and dooms the transaction, whose `COMMIT` then fails with
//! `(OC000)`, as DSQL fails the transaction that commits second.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant as StdInstant;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::{Decoder as _, Framed};

use crate::errors::SqlError;
use crate::rules::{self, Kind, Probe, Statement};
use crate::server::Shared;
use crate::wire::{self, Bind, ErrorFields, Frame, FrameCodec, Parse, WireError};

/// The statement PostgreSQL is sent in place of a refused one: it fails where the refused
/// statement would have run, with an error only the gateway produces.
const SENTINEL_SQL: &str = "SELECT pg_catalog.dsql_local_refusal()";
/// The function name in the sentinel's error (42883).
const SENTINEL_MARK: &str = "dsql_local_refusal";
/// The gateway's own prepared statements and portals.
const OWN_STATEMENT: &str = "__dsql_local_s";
const OWN_PORTAL: &str = "__dsql_local_p";
const SAVEPOINT: &str = "SAVEPOINT dsql_local";
const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT dsql_local";

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SessionError {
    /// The client sent something the protocol does not allow.
    #[error("client protocol error: {0}")]
    Client(#[source] WireError),
    /// The upstream PostgreSQL connection failed.
    #[error("upstream connection failed")]
    Upstream(#[source] WireError),
    /// The upstream PostgreSQL closed the connection.
    #[error("upstream closed the connection")]
    UpstreamClosed,
    /// Writing to the client failed.
    #[error("writing to the client failed")]
    ClientWrite(#[source] std::io::Error),
    /// Writing to the upstream failed.
    #[error("writing to the upstream failed")]
    UpstreamWrite(#[source] std::io::Error),
    /// The client sent a message type the gateway does not know.
    #[error("client sent unknown message type {0:?}")]
    UnknownMessage(char),
}

/// Which upstream message completes an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    ParseComplete,
    BindComplete,
    CloseComplete,
    /// RowDescription or NoData.
    Describe,
    /// CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// ReadyForQuery (a Sync, a simple Query).
    Ready,
}

impl Ends {
    fn completed_by(self, tag: u8) -> bool {
        match self {
            Self::ParseComplete => tag == b'1',
            Self::BindComplete => tag == b'2',
            Self::CloseComplete => tag == b'3',
            Self::Describe => matches!(tag, b'T' | b'n'),
            Self::Execute => matches!(tag, b'C' | b'I' | b's'),
            Self::Ready => tag == b'Z',
        }
    }
}

/// What to do with the responses to one forwarded or injected message.
#[derive(Debug)]
enum Act {
    /// Pass everything to the client.
    Pass,
    /// The gateway's own message: the client sees nothing.
    Swallow,
    /// The sentinel of a refusal: its error becomes this one (a 25P02 passes as it is).
    Refusal(SqlError),
    /// A row write (or locking read).
    Write(Box<WriteCtx>),
    /// `CREATE INDEX ASYNC` (or another async job): the statement's CommandComplete comes with
    /// a row holding the job id; in a simple Query the job row's INSERT that follows is swallowed.
    AsyncIndex { job_id: String, simple: bool, answered: bool },
    /// A Describe of a prepared statement: its ParameterDescription is remembered (probes bind
    /// the statement's parameters with these types); for `CREATE INDEX ASYNC` NoData becomes the
    /// `job_id` column.
    Describe { statement: Option<String>, async_index: bool },
    /// The ROLLBACK sent for a COMMIT the gateway refuses: its CommandComplete becomes `error`.
    CommitRefused(SqlError),
    /// A probe query: remember the first value of its first row.
    Capture,
    /// The end of a conflict recovery: answer the write as if it ran, or fail it.
    ConflictAnswered { verb: &'static str, rows: Option<u64>, simple: bool },
    /// One statement of a simple Query: pass its results, keep its ReadyForQuery.
    SimpleStep,
    /// The COMMIT or ROLLBACK ending the gateway's wrapping of a simple Query: its
    /// ReadyForQuery is the client's.
    EndRun,
    /// The gateway's own statement that ends a simple-Query step (it already answered the
    /// client): everything is swallowed, its ReadyForQuery moves the Query on.
    AbortStep,
}

/// A write in flight.
#[derive(Debug)]
struct WriteCtx {
    /// Ran behind the gateway's savepoint (explicit transaction).
    savepoint: bool,
    probe: Option<Probe>,
    /// The statement's SQL (for the verb of its command tag).
    sql: String,
    /// The client's Bind, for probes with the same parameters (extended protocol).
    bind: Option<(Bind, Vec<u32>)>,
    simple: bool,
}

#[derive(Debug)]
struct Expect {
    ends: Ends,
    act: Act,
}

/// The gateway's view of the current transaction (explicit or implicit).
#[derive(Debug, Default)]
struct Tx {
    /// Inside BEGIN ... COMMIT.
    block: bool,
    /// PostgreSQL reported the transaction failed (statements get 25P02).
    failed: bool,
    ddl: u32,
    ddl_done: u32,
    dml: bool,
    rows: u64,
    bytes: usize,
    started: Option<Instant>,
    /// A write conflict was found: COMMIT fails with this.
    doomed: Option<SqlError>,
    rolled_back: bool,
    error: bool,
}

/// A prepared statement of the client's.
#[derive(Debug)]
struct Prepared {
    statement: Statement,
    param_types: Vec<u32>,
}

/// A simple Query being run statement by statement.
#[derive(Debug)]
struct SimpleRun {
    statements: VecDeque<Statement>,
    /// The gateway wrapped the statements in BEGIN ... COMMIT (an implicit transaction).
    wrapped: bool,
    /// A statement failed: the rest are skipped.
    failed: bool,
    /// Waiting for this many gateway steps (a statement or its recovery) to finish.
    busy: bool,
}

/// The engine of one connection.
pub(crate) struct Session<C> {
    client: Framed<C, FrameCodec>,
    upstream: Framed<crate::server::UpstreamStream, FrameCodec>,
    shared: Arc<Shared>,
    pending: VecDeque<Expect>,
    statements: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, (Arc<Prepared>, Bind)>,
    /// Parameter types PostgreSQL inferred for each prepared statement (from its Describe).
    described: HashMap<String, Vec<u32>>,
    tx: Tx,
    /// PostgreSQL skips extended-protocol messages until the next Sync (after an error).
    skipping: bool,
    /// A write's result (or its recovery) is awaited: client messages wait.
    barrier: bool,
    simple: Option<SimpleRun>,
    copy_in: bool,
    /// The catalog epoch this session has seen (OC001 when another session commits DDL).
    epoch_seen: u64,
    captured: Option<String>,
    /// The last ReadyForQuery status from upstream.
    status: u8,
}

/// How a session ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The client said goodbye or hung up.
    ClientGone,
    /// The connection reached its maximum lifetime.
    Lifetime,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Session<C> {
    pub(crate) fn new(
        client: Framed<C, FrameCodec>,
        upstream: Framed<crate::server::UpstreamStream, FrameCodec>,
        shared: Arc<Shared>,
    ) -> Self {
        let epoch_seen = shared.epoch.load(Ordering::Acquire);
        Self {
            client,
            upstream,
            shared,
            pending: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            described: HashMap::new(),
            tx: Tx::default(),
            skipping: false,
            barrier: false,
            simple: None,
            copy_in: false,
            epoch_seen,
            captured: None,
            status: b'I',
        }
    }

    /// Runs the session until the client leaves, the lifetime ends or a connection fails.
    pub(crate) async fn run(mut self, deadline: Instant) -> Result<Ending, SessionError> {
        enum Event {
            Client(Option<Result<Frame, WireError>>),
            Upstream(Option<Result<Frame, WireError>>),
            Deadline,
        }
        // One timer for the whole session: a new one per event would cost a timer-wheel insert
        // and removal per message.
        let lifetime = tokio::time::sleep_until(deadline);
        tokio::pin!(lifetime);
        loop {
            let blocked = self.blocked();
            let event = tokio::select! {
                biased;
                () = &mut lifetime => Event::Deadline,
                frame = self.upstream.next() => Event::Upstream(frame),
                frame = self.client.next(), if !blocked => Event::Client(frame),
            };
            match event {
                Event::Deadline => return Ok(Ending::Lifetime),
                Event::Upstream(None) => return Err(SessionError::UpstreamClosed),
                Event::Upstream(Some(frame)) => {
                    self.on_upstream(frame.map_err(SessionError::Upstream)?).await?;
                    // The rest of what arrived with it, without a trip through the select.
                    while let Some(frame) =
                        FrameCodec.decode(self.upstream.read_buffer_mut()).map_err(SessionError::Upstream)?
                    {
                        self.on_upstream(frame).await?;
                    }
                    self.client.flush().await.map_err(SessionError::ClientWrite)?;
                }
                Event::Client(None) => return Ok(Ending::ClientGone),
                Event::Client(Some(frame)) => {
                    if !self.on_client(frame.map_err(SessionError::Client)?).await? {
                        return Ok(Ending::ClientGone);
                    }
                    while !self.blocked() {
                        let Some(frame) =
                            FrameCodec.decode(self.client.read_buffer_mut()).map_err(SessionError::Client)?
                        else {
                            break;
                        };
                        if !self.on_client(frame).await? {
                            return Ok(Ending::ClientGone);
                        }
                    }
                    self.upstream.flush().await.map_err(SessionError::UpstreamWrite)?;
                }
            }
        }
    }

    fn blocked(&self) -> bool {
        !self.copy_in && (self.barrier || self.simple.is_some())
    }

    async fn send_client(&mut self, frame: Frame) -> Result<(), SessionError> {
        self.client.feed(frame).await.map_err(SessionError::ClientWrite)
    }

    async fn send_upstream(&mut self, frame: Frame, expect: Option<Expect>) -> Result<(), SessionError> {
        if let Some(expect) = expect {
            self.pending.push_back(expect);
        }
        self.upstream.feed(frame).await.map_err(SessionError::UpstreamWrite)
    }

    async fn flush_upstream(&mut self) -> Result<(), SessionError> {
        self.upstream.flush().await.map_err(SessionError::UpstreamWrite)
    }

    fn expect(ends: Ends, act: Act) -> Option<Expect> {
        Some(Expect { ends, act })
    }

    // ---------------------------------------------------------------- client side

    /// Handles one client message; `false` ends the session.
    async fn on_client(&mut self, frame: Frame) -> Result<bool, SessionError> {
        if self.copy_in {
            if matches!(frame.tag, b'c' | b'f') {
                self.copy_in = false;
            }
            self.send_upstream(frame, None).await?;
            return Ok(true);
        }
        if self.skipping && matches!(frame.tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H') {
            // PostgreSQL ignores these until the Sync; so does the gateway.
            return Ok(true);
        }
        match frame.tag {
            b'Q' => self.on_query(&frame).await?,
            b'P' => self.on_parse(frame).await?,
            b'B' => self.on_bind(frame).await?,
            b'D' => self.on_describe(frame).await?,
            b'E' => self.on_execute(frame).await?,
            b'C' => {
                let (kind, name) = wire::target(b'C', &frame.body).map_err(SessionError::Client)?;
                if kind == b'S' {
                    self.described.remove(&name);
                    self.statements.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
                self.send_upstream(frame, Self::expect(Ends::CloseComplete, Act::Pass)).await?;
            }
            b'S' => {
                // PostgreSQL skips up to this Sync, not past it.
                self.skipping = false;
                self.send_upstream(frame, Self::expect(Ends::Ready, Act::Pass)).await?;
            }
            b'H' => self.send_upstream(frame, None).await?,
            b'X' => {
                self.send_upstream(frame, None).await?;
                self.flush_upstream().await?;
                return Ok(false);
            }
            // A function call answers with FunctionCallResponse and ReadyForQuery.
            b'F' => self.send_upstream(frame, Self::expect(Ends::Ready, Act::Pass)).await?,
            // Copy data outside a COPY: PostgreSQL reports the protocol error itself.
            b'd' | b'c' | b'f' => self.send_upstream(frame, None).await?,
            other => return Err(SessionError::UnknownMessage(char::from(other))),
        }
        Ok(true)
    }

    async fn on_parse(&mut self, frame: Frame) -> Result<(), SessionError> {
        let parse = Parse::read(&frame.body).map_err(SessionError::Client)?;
        self.described.remove(&parse.name);
        let started = StdInstant::now();
        let analysed = self.shared.analyses.analyze(&parse.query);
        self.shared.metrics.observe_analysis(started.elapsed());
        // Several statements in one Parse: PostgreSQL refuses that itself.
        let statement = if let [only] = &*analysed {
            only.clone()
        } else {
            Statement {
                span: 0..parse.query.len(),
                upstream_sql: parse.query.clone(),
                kind: Kind::Other,
                refusal: None,
                async_job: None,
            }
        };
        if let Some(refusal) = statement.refusal.clone() {
            self.statements.remove(&parse.name);
            return self.refuse_extended(refusal, &parse.name).await;
        }
        let upstream = Parse {
            name: parse.name.clone(),
            query: statement.upstream_sql.clone(),
            param_types: parse.param_types.clone(),
        };
        let prepared = Arc::new(Prepared { statement, param_types: parse.param_types });
        self.statements.insert(parse.name, prepared);
        self.send_upstream(upstream.frame(), Self::expect(Ends::ParseComplete, Act::Pass)).await
    }

    async fn on_bind(&mut self, frame: Frame) -> Result<(), SessionError> {
        let bind = Bind::read(&frame.body).map_err(SessionError::Client)?;
        if let Some(prepared) = self.statements.get(&bind.statement).cloned() {
            self.portals.insert(bind.portal.clone(), (prepared, bind));
        }
        self.send_upstream(frame, Self::expect(Ends::BindComplete, Act::Pass)).await
    }

    async fn on_describe(&mut self, frame: Frame) -> Result<(), SessionError> {
        let (kind, name) = wire::target(b'D', &frame.body).map_err(SessionError::Client)?;
        let prepared = if kind == b'S' {
            self.statements.get(&name).cloned()
        } else {
            self.portals.get(&name).map(|(p, _)| p.clone())
        };
        let async_index = prepared.is_some_and(|p| p.statement.async_job.is_some());
        let act = Act::Describe { statement: (kind == b'S').then_some(name), async_index };
        self.send_upstream(frame, Self::expect(Ends::Describe, act)).await
    }

    async fn on_execute(&mut self, frame: Frame) -> Result<(), SessionError> {
        let portal = wire::execute_portal(&frame.body).map_err(SessionError::Client)?;
        let Some((prepared, bind)) = self.portals.get(&portal).cloned() else {
            // Unknown to the gateway (e.g. a failed Bind): PostgreSQL answers.
            return self.send_upstream(frame, Self::expect(Ends::Execute, Act::Pass)).await;
        };
        let statement = &prepared.statement;
        let bytes = bind.param_bytes() + statement.upstream_sql.len();
        match self.check(statement, bytes) {
            Check::Refuse(error) => self.refuse_extended(error, OWN_STATEMENT).await,
            Check::RefuseCommit(error) => {
                self.inject_extended("ROLLBACK", Act::CommitRefused(error)).await?;
                self.poison_extended().await
            }
            Check::Run => {
                self.started(statement, bytes);
                match &statement.kind {
                    Kind::Write { probe } => {
                        let savepoint = self.tx.block && !self.tx.failed;
                        if savepoint {
                            self.inject_extended(SAVEPOINT, Act::Swallow).await?;
                        }
                        let ctx = WriteCtx {
                            savepoint,
                            probe: probe.clone(),
                            sql: statement.upstream_sql.clone(),
                            bind: Some((bind.clone(), self.param_types(&bind.statement, &prepared))),
                            simple: false,
                        };
                        self.send_upstream(frame, Self::expect(Ends::Execute, Act::Write(Box::new(ctx))))
                            .await?;
                        self.send_upstream(wire::flush(), None).await?;
                        self.barrier = true;
                        self.flush_upstream().await
                    }
                    Kind::Ddl { .. } if statement.async_job.is_some() => {
                        let job_id = self.shared.new_job_id();
                        let record = job_record_sql(&job_id, statement);
                        self.send_upstream(
                            frame,
                            Self::expect(
                                Ends::Execute,
                                Act::AsyncIndex { job_id, simple: false, answered: false },
                            ),
                        )
                        .await?;
                        self.inject_extended(&record, Act::Swallow).await
                    }
                    _ => self.send_upstream(frame, Self::expect(Ends::Execute, Act::Pass)).await,
                }
            }
        }
    }

    /// The parameter types of a prepared statement: the client's, completed by PostgreSQL's
    /// inference where the client left them open.
    fn param_types(&self, name: &str, prepared: &Prepared) -> Vec<u32> {
        match self.described.get(name) {
            Some(inferred)
                if prepared.param_types.iter().all(|&t| t == 0)
                    || prepared.param_types.len() < inferred.len() =>
            {
                inferred.clone()
            }
            _ => prepared.param_types.clone(),
        }
    }

    /// Runs `sql` through the extended protocol under the gateway's own statement and portal
    /// names; `act` handles its Execute's responses, everything else is swallowed.
    async fn inject_extended(&mut self, sql: &str, act: Act) -> Result<(), SessionError> {
        let parse = Parse { name: OWN_STATEMENT.to_owned(), query: sql.to_owned(), param_types: Vec::new() };
        self.send_upstream(parse.frame(), Self::expect(Ends::ParseComplete, Act::Swallow)).await?;
        self.send_upstream(
            wire::bind_plain(OWN_PORTAL, OWN_STATEMENT),
            Self::expect(Ends::BindComplete, Act::Swallow),
        )
        .await?;
        self.send_upstream(wire::execute(OWN_PORTAL), Self::expect(Ends::Execute, act)).await?;
        self.send_upstream(wire::close(b'P', OWN_PORTAL), Self::expect(Ends::CloseComplete, Act::Swallow))
            .await?;
        self.send_upstream(wire::close(b'S', OWN_STATEMENT), Self::expect(Ends::CloseComplete, Act::Swallow))
            .await
    }

    /// Refuses at this point of an extended-protocol batch: the sentinel fails upstream, its error
    /// becomes `error`, and PostgreSQL skips to the Sync as it would for its own error.
    async fn refuse_extended(&mut self, error: SqlError, name: &str) -> Result<(), SessionError> {
        self.shared.metrics.statement_refused(&error);
        tracing::info!(code = error.code, rule = %error.message, "statement refused");
        let parse = Parse { name: name.to_owned(), query: SENTINEL_SQL.to_owned(), param_types: Vec::new() };
        self.send_upstream(parse.frame(), Self::expect(Ends::ParseComplete, Act::Refusal(error))).await?;
        self.skipping = true;
        Ok(())
    }

    /// Makes PostgreSQL skip to the next Sync after an error the gateway answered itself.
    async fn poison_extended(&mut self) -> Result<(), SessionError> {
        let parse =
            Parse { name: OWN_STATEMENT.to_owned(), query: SENTINEL_SQL.to_owned(), param_types: Vec::new() };
        self.send_upstream(parse.frame(), Self::expect(Ends::ParseComplete, Act::Swallow)).await?;
        self.skipping = true;
        Ok(())
    }

    async fn on_query(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let text = wire::query_text(&frame.body).map_err(SessionError::Client)?;
        let started = StdInstant::now();
        let statements = self.shared.analyses.analyze(&text);
        self.shared.metrics.observe_analysis(started.elapsed());
        if statements.is_empty() {
            return self.send_upstream(frame.clone(), Self::expect(Ends::Ready, Act::Pass)).await;
        }
        let controls =
            statements.iter().any(|s| matches!(s.kind, Kind::Begin { .. } | Kind::Commit | Kind::Rollback));
        let writes = statements.iter().any(|s| matches!(s.kind, Kind::Write { .. }) && s.refusal.is_none());
        // Outside a transaction, several statements are one implicit transaction, and a write
        // must stay undoable until its row count is known: the gateway makes both explicit.
        let wrapped = !self.tx.block && !controls && (statements.len() > 1 || writes);
        self.simple = Some(SimpleRun {
            statements: statements.iter().cloned().collect(),
            wrapped,
            failed: false,
            busy: false,
        });
        if wrapped {
            self.tx.block = true;
            self.tx.started = Some(Instant::now());
            self.send_upstream(wire::query("BEGIN"), Self::expect(Ends::Ready, Act::Swallow)).await?;
        }
        self.advance_simple().await
    }

    /// Sends the next statement of the simple Query, or finishes it.
    async fn advance_simple(&mut self) -> Result<(), SessionError> {
        let Some(run) = self.simple.as_mut() else { return Ok(()) };
        if run.busy {
            return Ok(());
        }
        let next = if run.failed { None } else { run.statements.pop_front() };
        let Some(statement) = next else { return self.finish_simple().await };
        run.busy = true;
        if let Some(refusal) = statement.refusal.clone() {
            self.refuse_simple(refusal).await?;
            return self.flush_upstream().await;
        }
        let bytes = statement.upstream_sql.len();
        match self.check(&statement, bytes) {
            Check::Refuse(error) => self.refuse_simple(error).await?,
            Check::RefuseCommit(error) => {
                self.send_upstream(
                    wire::query("ROLLBACK"),
                    Self::expect(Ends::Ready, Act::CommitRefused(error)),
                )
                .await?;
            }
            Check::Run => {
                self.started(&statement, bytes);
                let act = match &statement.kind {
                    Kind::Write { probe } => {
                        let savepoint = self.tx.block
                            && !self.tx.failed
                            && !self.simple.as_ref().is_some_and(|r| r.wrapped);
                        if savepoint {
                            self.send_upstream(
                                wire::query(SAVEPOINT),
                                Self::expect(Ends::Ready, Act::Swallow),
                            )
                            .await?;
                        }
                        Act::Write(Box::new(WriteCtx {
                            savepoint,
                            probe: probe.clone(),
                            sql: statement.upstream_sql.clone(),
                            bind: None,
                            simple: true,
                        }))
                    }
                    Kind::Ddl { .. } if statement.async_job.is_some() => {
                        let job_id = self.shared.new_job_id();
                        let sql =
                            format!("{}; {}", statement.upstream_sql, job_record_sql(&job_id, &statement));
                        self.send_upstream(
                            wire::query(&sql),
                            Self::expect(
                                Ends::Ready,
                                Act::AsyncIndex { job_id, simple: true, answered: false },
                            ),
                        )
                        .await?;
                        return self.flush_upstream().await;
                    }
                    _ => Act::SimpleStep,
                };
                self.send_upstream(wire::query(&statement.upstream_sql), Self::expect(Ends::Ready, act))
                    .await?;
            }
        }
        self.flush_upstream().await
    }

    async fn refuse_simple(&mut self, error: SqlError) -> Result<(), SessionError> {
        self.shared.metrics.statement_refused(&error);
        tracing::info!(code = error.code, rule = %error.message, "statement refused");
        self.send_upstream(wire::query(SENTINEL_SQL), Self::expect(Ends::Ready, Act::Refusal(error))).await
    }

    /// Ends a simple Query: COMMIT or ROLLBACK of the gateway's wrapping, then ReadyForQuery.
    async fn finish_simple(&mut self) -> Result<(), SessionError> {
        let Some(run) = self.simple.take() else { return Ok(()) };
        if run.wrapped {
            let end = if run.failed || self.tx.failed { "ROLLBACK" } else { "COMMIT" };
            // Stay blocked until the end's ReadyForQuery, which goes to the client.
            self.simple = Some(SimpleRun {
                statements: VecDeque::new(),
                wrapped: false,
                failed: run.failed,
                busy: true,
            });
            self.send_upstream(wire::query(end), Self::expect(Ends::Ready, Act::EndRun)).await?;
            return self.flush_upstream().await;
        }
        let status = self.status;
        self.send_client(wire::ready_for_query(status)).await
    }

    // ---------------------------------------------------------------- rules at run time

    fn check(&mut self, statement: &Statement, bytes: usize) -> Check {
        if self.tx.failed {
            // PostgreSQL answers 25P02 before any rule, as DSQL does.
            return Check::Run;
        }
        let limits = &self.shared.txn;
        match &statement.kind {
            Kind::Commit if self.tx.block => {
                if let Some(doomed) = self.tx.doomed.clone() {
                    self.shared.metrics.occ_conflict("OC000");
                    tracing::info!(rule = "OC000", "COMMIT refused: another transaction wrote the same rows");
                    return Check::RefuseCommit(doomed);
                }
                if self.tx.started.is_some_and(|s| s.elapsed() > limits.max_age) {
                    return Check::RefuseCommit(SqlError::age_limit(limits.max_age.as_secs()));
                }
                if self.tx.bytes > limits.max_bytes {
                    return Check::RefuseCommit(SqlError::size_limit());
                }
                Check::Run
            }
            Kind::Begin { .. } | Kind::Commit | Kind::Rollback | Kind::Session => Check::Run,
            kind => {
                let epoch = self.shared.epoch.load(Ordering::Acquire);
                if epoch > self.epoch_seen {
                    self.epoch_seen = epoch;
                    self.shared.metrics.occ_conflict("OC001");
                    tracing::info!(
                        rule = "OC001",
                        "statement refused: the schema changed since this session's last statement"
                    );
                    return Check::Refuse(SqlError::occ_schema_conflict());
                }
                match kind {
                    Kind::Ddl { .. } if self.tx.ddl > 0 => Check::Refuse(SqlError::multiple_ddl()),
                    Kind::Ddl { .. } if self.tx.dml => Check::Refuse(SqlError::ddl_and_dml()),
                    Kind::Write { .. } if self.tx.ddl > 0 => Check::Refuse(SqlError::ddl_and_dml()),
                    Kind::Write { .. } if !self.tx.block && bytes > limits.max_bytes => {
                        Check::Refuse(SqlError::size_limit())
                    }
                    _ => Check::Run,
                }
            }
        }
    }

    /// Records that `statement` runs now.
    fn started(&mut self, statement: &Statement, bytes: usize) {
        match statement.kind {
            Kind::Begin { .. } => {
                self.tx.block = true;
                self.tx.started = Some(Instant::now());
            }
            Kind::Ddl { .. } => self.tx.ddl += 1,
            Kind::Write { .. } => {
                self.tx.dml = true;
                self.tx.bytes += bytes;
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- upstream side

    async fn on_upstream(&mut self, frame: Frame) -> Result<(), SessionError> {
        match frame.tag {
            // Asynchronous messages belong to no request.
            b'N' | b'A' | b'S' => return self.send_client(frame).await,
            b'G' => {
                // COPY FROM STDIN: the client streams data until CopyDone or CopyFail.
                self.copy_in = true;
                return self.send_client(frame).await;
            }
            _ => {}
        }
        let Some(head) = self.pending.front() else {
            tracing::warn!(tag = %char::from(frame.tag), "unexpected message from upstream");
            return self.send_client(frame).await;
        };
        let completes = head.ends.completed_by(frame.tag);
        let is_error = frame.tag == b'E';
        let ends_on_ready = head.ends == Ends::Ready;
        if is_error {
            self.tx.error = true;
            if self.tx.block {
                self.tx.failed = true;
            }
        }
        if completes || (is_error && !ends_on_ready) {
            let expect = self.pending.pop_front().expect("head exists");
            if is_error && !ends_on_ready {
                // The extended protocol skips everything up to the next Sync: what was already
                // forwarded gets no answer, and what the client sends until its Sync is dropped
                // (unless that Sync was forwarded already).
                while self.pending.front().is_some_and(|e| e.ends != Ends::Ready) {
                    self.pending.pop_front();
                }
                self.skipping = self.pending.is_empty();
            }
            self.complete(expect, frame).await
        } else {
            self.midway(frame).await
        }
    }

    /// A response that does not complete the head expectation (rows, descriptions, errors of a
    /// simple Query).
    async fn midway(&mut self, frame: Frame) -> Result<(), SessionError> {
        let head = self.pending.front_mut().expect("checked by the caller");
        match &mut head.act {
            Act::Swallow | Act::ConflictAnswered { .. } | Act::EndRun | Act::AbortStep => Ok(()),
            Act::Capture => {
                if frame.tag == b'D' && self.captured.is_none() {
                    self.captured = wire::first_value(&frame.body);
                }
                Ok(())
            }
            Act::Refusal(error) if frame.tag == b'E' => {
                let error = error.clone();
                self.refusal_error(&frame, &error).await
            }
            Act::Write(ctx) if ctx.simple => {
                let conflict = frame.tag == b'E' && is_conflict(&ErrorFields::read(&frame.body).code);
                if conflict {
                    return self.write_conflict_simple().await;
                }
                match frame.tag {
                    b'C' => self.write_done(frame).await,
                    b'E' => {
                        self.fail_simple();
                        self.send_client(frame).await
                    }
                    _ => self.send_client(frame).await,
                }
            }
            Act::AsyncIndex { job_id, simple: true, answered } => match frame.tag {
                b'C' if !*answered => {
                    *answered = true;
                    let job_id = job_id.clone();
                    self.tx.ddl_done += 1;
                    self.send_client(wire::row_description(&["job_id"])).await?;
                    self.send_client(wire::data_row(&[job_id.as_str()])).await?;
                    self.send_client(frame).await
                }
                b'E' => {
                    self.fail_simple();
                    self.send_client(frame).await
                }
                b'N' | b'C' => Ok(()),
                _ => self.send_client(frame).await,
            },
            Act::CommitRefused(_) => Ok(()),
            Act::Describe { statement, .. } if frame.tag == b't' => {
                if let Some(name) = statement.take() {
                    self.described.insert(name, wire::parameter_types(&frame.body));
                }
                self.send_client(frame).await
            }
            _ => {
                if frame.tag == b'E' {
                    self.fail_simple();
                }
                if frame.tag == b'C' {
                    self.note_command(&frame);
                }
                self.send_client(frame).await
            }
        }
    }

    /// The response that completes `expect`.
    async fn complete(&mut self, expect: Expect, frame: Frame) -> Result<(), SessionError> {
        if frame.tag == b'Z' {
            return self.ready(expect, frame).await;
        }
        match expect.act {
            Act::Pass => {
                if frame.tag == b'C' {
                    self.note_command(&frame);
                }
                self.send_client(frame).await
            }
            Act::Swallow
            | Act::Capture
            | Act::SimpleStep
            | Act::ConflictAnswered { .. }
            | Act::EndRun
            | Act::AbortStep => {
                if frame.tag == b'E' {
                    let fields = ErrorFields::read(&frame.body);
                    tracing::debug!(code = %fields.code, message = %fields.message, "gateway statement failed");
                }
                Ok(())
            }
            Act::Refusal(error) => {
                if frame.tag == b'E' {
                    self.refusal_error(&frame, &error).await
                } else {
                    // The sentinel ran? Only if someone created the function; refuse anyway.
                    self.send_client(wire::error_response(&error)).await
                }
            }
            Act::Describe { async_index, .. } => {
                if async_index && frame.tag == b'n' {
                    self.send_client(wire::row_description(&["job_id"])).await
                } else {
                    self.send_client(frame).await
                }
            }
            Act::AsyncIndex { job_id, .. } => {
                if frame.tag == b'C' {
                    self.tx.ddl_done += 1;
                    self.send_client(wire::data_row(&[job_id.as_str()])).await?;
                }
                self.send_client(frame).await
            }
            Act::CommitRefused(error) => {
                if frame.tag == b'C' {
                    self.tx.rolled_back = true;
                    self.send_client(wire::error_response(&error)).await
                } else {
                    self.send_client(frame).await
                }
            }
            Act::Write(ctx) => self.write_completed(*ctx, frame).await,
        }
    }

    /// A ReadyForQuery: the end of a Sync or of one simple-Query statement.
    async fn ready(&mut self, expect: Expect, frame: Frame) -> Result<(), SessionError> {
        let status = frame.body.first().copied().unwrap_or(b'I');
        self.status = status;
        self.tx.block = status != b'I';
        self.tx.failed = status == b'E';
        if status == b'I' {
            self.transaction_ended();
        }
        match expect.act {
            Act::Pass => self.send_client(frame).await,
            Act::EndRun => {
                self.simple = None;
                self.send_client(frame).await
            }
            Act::Swallow | Act::Capture => Ok(()),
            Act::ConflictAnswered { verb, rows, simple } => {
                let rows = rows.or_else(|| self.captured.take().and_then(|v| v.parse().ok()));
                self.captured = None;
                match rows {
                    Some(rows) => {
                        tracing::info!(rule = "OC000", "write conflict: the transaction will fail at COMMIT");
                        self.tx.doomed = Some(SqlError::occ_data_conflict());
                        self.send_client(wire::command_complete(&wire::write_tag(verb, rows))).await?;
                    }
                    None => {
                        // The probe failed: the conflict is reported now instead of at COMMIT.
                        self.shared.metrics.occ_conflict("OC000");
                        self.send_client(wire::error_response(&SqlError::occ_data_conflict())).await?;
                        if simple {
                            self.fail_simple();
                        } else {
                            self.poison_extended().await?;
                        }
                    }
                }
                self.end_step(simple).await
            }
            Act::CommitRefused(error) => {
                self.tx.rolled_back = true;
                self.send_client(wire::error_response(&error)).await?;
                self.fail_simple();
                self.end_step(true).await
            }
            Act::Refusal(_)
            | Act::SimpleStep
            | Act::AbortStep
            | Act::Write(_)
            | Act::AsyncIndex { .. }
            | Act::Describe { .. } => self.end_step(true).await,
        }
    }

    /// One gateway step finished: a barrier lifts, a simple Query goes on.
    async fn end_step(&mut self, simple: bool) -> Result<(), SessionError> {
        if !simple {
            self.barrier = false;
            return Ok(());
        }
        if let Some(run) = self.simple.as_mut() {
            run.busy = false;
        }
        self.advance_simple().await
    }

    fn fail_simple(&mut self) {
        if let Some(run) = self.simple.as_mut() {
            run.failed = true;
        }
    }

    async fn refusal_error(&mut self, frame: &Frame, error: &SqlError) -> Result<(), SessionError> {
        self.fail_simple();
        let fields = ErrorFields::read(&frame.body);
        if fields.message.contains(SENTINEL_MARK) {
            self.send_client(wire::error_response(error)).await
        } else {
            // 25P02 (a failed transaction) comes first, as on DSQL.
            self.send_client(frame.clone()).await
        }
    }

    /// Reads a CommandComplete the client is shown, for the transaction's bookkeeping.
    fn note_command(&mut self, frame: &Frame) {
        let tag = wire::command_tag(&frame.body);
        if tag == "ROLLBACK" {
            self.tx.rolled_back = true;
        } else if is_ddl_tag(&tag) {
            self.tx.ddl_done += 1;
        }
    }

    /// The transaction is over (ReadyForQuery `I`): a committed schema change moves the catalog
    /// epoch, and the other sessions' next statement fails once with OC001.
    fn transaction_ended(&mut self) {
        if self.tx.ddl_done > 0 && !self.tx.rolled_back && !self.tx.error {
            self.epoch_seen = self.shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        }
        self.tx = Tx::default();
    }

    // ---------------------------------------------------------------- writes

    /// The upstream's answer to a write's Execute (extended protocol).
    async fn write_completed(&mut self, ctx: WriteCtx, frame: Frame) -> Result<(), SessionError> {
        if frame.tag == b'E' {
            let fields = ErrorFields::read(&frame.body);
            if is_conflict(&fields.code) {
                return self.write_conflict_extended(ctx).await;
            }
            self.barrier = false;
            return self.send_client(frame).await;
        }
        self.barrier = false;
        if frame.tag == b'C' {
            return self.write_done(frame).await;
        }
        self.send_client(frame).await
    }

    /// A write's CommandComplete: count its rows against the transaction's limit.
    async fn write_done(&mut self, frame: Frame) -> Result<(), SessionError> {
        let tag = wire::command_tag(&frame.body);
        self.tx.rows += wire::rows_written(&tag).unwrap_or(0);
        if self.tx.rows <= self.shared.txn.max_rows {
            return self.send_client(frame).await;
        }
        let error = SqlError::row_limit();
        self.shared.metrics.statement_refused(&error);
        tracing::info!(rows = self.tx.rows, "transaction row limit exceeded");
        self.send_client(wire::error_response(&error)).await?;
        if self.simple.is_some() {
            self.fail_simple();
            // Abort the (explicit or gateway-made) transaction upstream; the sentinel's
            // ReadyForQuery, not the write's, ends this step.
            if let Some(head) = self.pending.front_mut() {
                head.act = Act::Swallow;
            }
            self.send_upstream(wire::query(SENTINEL_SQL), Self::expect(Ends::Ready, Act::AbortStep)).await?;
            self.flush_upstream().await
        } else {
            self.poison_extended().await?;
            self.send_upstream(wire::flush(), None).await?;
            self.flush_upstream().await
        }
    }

    /// A write conflict in the extended protocol. PostgreSQL now skips to a Sync: the gateway
    /// sends one, rolls back to its savepoint, probes the row count and answers as if the write ran.
    async fn write_conflict_extended(&mut self, ctx: WriteCtx) -> Result<(), SessionError> {
        let verb = write_verb(&ctx.sql);
        if !ctx.savepoint || ctx.probe.is_none() || verb.is_none() {
            // No transaction to keep alive, or no way to answer as if it ran: report it now.
            self.shared.metrics.occ_conflict("OC000");
            self.barrier = false;
            return self.send_client(wire::error_response(&SqlError::occ_data_conflict())).await;
        }
        let verb = verb.expect("checked");
        self.skipping = false;
        self.send_upstream(wire::sync(), Self::expect(Ends::Ready, Act::Swallow)).await?;
        self.send_upstream(wire::query(ROLLBACK_TO_SAVEPOINT), Self::expect(Ends::Ready, Act::Swallow))
            .await?;
        let rows = match ctx.probe.expect("checked") {
            Probe::Rows(rows) => Some(rows),
            Probe::Count(sql) => {
                let (bind, types) = ctx.bind.expect("extended writes carry their bind");
                let parse = Parse { name: OWN_STATEMENT.to_owned(), query: sql, param_types: types };
                self.send_upstream(parse.frame(), Self::expect(Ends::ParseComplete, Act::Swallow)).await?;
                self.send_upstream(
                    bind.rebind(OWN_PORTAL, OWN_STATEMENT),
                    Self::expect(Ends::BindComplete, Act::Swallow),
                )
                .await?;
                self.send_upstream(wire::execute(OWN_PORTAL), Self::expect(Ends::Execute, Act::Capture))
                    .await?;
                self.send_upstream(
                    wire::close(b'P', OWN_PORTAL),
                    Self::expect(Ends::CloseComplete, Act::Swallow),
                )
                .await?;
                self.send_upstream(
                    wire::close(b'S', OWN_STATEMENT),
                    Self::expect(Ends::CloseComplete, Act::Swallow),
                )
                .await?;
                None
            }
        };
        self.captured = None;
        self.send_upstream(
            wire::sync(),
            Self::expect(Ends::Ready, Act::ConflictAnswered { verb, rows, simple: false }),
        )
        .await?;
        self.flush_upstream().await
    }

    /// A write conflict in a simple Query (its error arrived; its ReadyForQuery follows).
    async fn write_conflict_simple(&mut self) -> Result<(), SessionError> {
        let head = self.pending.pop_front().expect("the write's expectation");
        let Act::Write(ctx) = head.act else { unreachable!("called for writes") };
        let verb = write_verb(&ctx.sql);
        if !ctx.savepoint || ctx.probe.is_none() || verb.is_none() {
            self.shared.metrics.occ_conflict("OC000");
            self.fail_simple();
            self.pending.push_front(Expect { ends: Ends::Ready, act: Act::SimpleStep });
            return self.send_client(wire::error_response(&SqlError::occ_data_conflict())).await;
        }
        // The failed statement's ReadyForQuery, then the recovery.
        self.pending.push_front(Expect { ends: Ends::Ready, act: Act::Swallow });
        self.send_upstream(wire::query(ROLLBACK_TO_SAVEPOINT), Self::expect(Ends::Ready, Act::Swallow))
            .await?;
        let rows = match ctx.probe.expect("checked") {
            Probe::Rows(rows) => Some(rows),
            Probe::Count(sql) => {
                self.send_upstream(wire::query(&sql), Self::expect(Ends::Ready, Act::Swallow)).await?;
                if let Some(last) = self.pending.back_mut() {
                    last.act = Act::Capture;
                }
                None
            }
        };
        self.captured = None;
        // A no-op whose ReadyForQuery closes the recovery.
        self.send_upstream(
            wire::query(""),
            Self::expect(
                Ends::Ready,
                Act::ConflictAnswered { verb: verb.expect("checked"), rows, simple: true },
            ),
        )
        .await?;
        self.flush_upstream().await
    }
}

/// What the run-time rules say about a statement.
enum Check {
    Run,
    Refuse(SqlError),
    /// A COMMIT that must fail: the transaction is rolled back and the client gets this.
    RefuseCommit(SqlError),
}

/// PostgreSQL's signs of a write-write conflict: a row lock not granted within `lock_timeout`,
/// or a row changed by a transaction that committed after this one's snapshot.
fn is_conflict(code: &str) -> bool {
    matches!(code, "55P03" | "40001" | "40P01")
}

fn is_ddl_tag(tag: &str) -> bool {
    ["CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT"].iter().any(|verb| tag.starts_with(verb))
}

/// The verb of a write's command tag, from its parse tree.
fn write_verb(sql: &str) -> Option<&'static str> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    let node = parsed.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()?;
    Some(match node {
        pg_query::NodeEnum::InsertStmt(_) => "INSERT",
        pg_query::NodeEnum::UpdateStmt(_) => "UPDATE",
        pg_query::NodeEnum::DeleteStmt(_) => "DELETE",
        pg_query::NodeEnum::SelectStmt(_) => "SELECT",
        _ => return None,
    })
}

/// The `sys.jobs` row of an async job, written in the statement's own transaction (the job is
/// done when it commits: PostgreSQL builds the index synchronously).
fn job_record_sql(job_id: &str, statement: &Statement) -> String {
    let (job_type, object) = match statement.async_job {
        Some(rules::AsyncJob::ValidateConstraint) => ("VALIDATE", None),
        _ => ("INDEX_BUILD", index_name(&statement.upstream_sql)),
    };
    let object = object.as_deref().map_or_else(|| "NULL".to_owned(), quote_literal);
    format!(
        "INSERT INTO sys.jobs (job_id, status, details, job_type, class_id, object_id, object_name, start_time, update_time) \
         SELECT {}, 'completed', NULL, '{job_type}', 'pg_class'::regclass::oid, c.oid, \
         (SELECT n.nspname || '.' || c.relname FROM pg_namespace n WHERE n.oid = c.relnamespace), now(), clock_timestamp() \
         FROM (SELECT to_regclass({object}) AS id) r LEFT JOIN pg_class c ON c.oid = r.id::oid",
        quote_literal(job_id)
    )
}

fn index_name(sql: &str) -> Option<String> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    match parsed.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()? {
        pg_query::NodeEnum::IndexStmt(index) if !index.idxname.is_empty() => Some(index.idxname.clone()),
        _ => None,
    }
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
