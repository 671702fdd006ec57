//! Orgplane's end-to-end suites: the real `orgplane` program (this crate's `orgplane-e2e-node`
//! binary) started as child processes in both layouts, on SQLite and PostgreSQL, driven over
//! gRPC. The suites are in `tests/`: `foundation` (start-up, health, reflection, migrations,
//! shutdown), `stories` (the requirement stories end to end), `sessions` (ended sessions and
//! deactivated keys across processes) and `traces` (one trace across the services). Their
//! process starter and mail reader are in `tests/support`.
