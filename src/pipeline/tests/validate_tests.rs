use std::time::Duration;

use crate::pipeline::{validate, validate_str, ErrorCode, PipelineError};

const BUILD_AND_TEST: &str = include_str!("../testdata/seed_build_and_test.yaml");
const DEPLOY: &str = include_str!("../testdata/seed_deploy.yaml");
const VALIDATE: &str = include_str!("../testdata/seed_validate.yaml");
const SAMPLE: &str = include_str!("../testdata/seed_sample_phase.yaml");

fn errors(text: &str) -> Vec<PipelineError> {
    match validate_str("p.yaml", text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// (line, column, code) of every error, in reported order.
fn places(text: &str) -> Vec<(u32, u32, ErrorCode)> {
    errors(text)
        .into_iter()
        .map(|e| (e.line, e.column, e.code))
        .collect()
}

#[test]
fn seed_build_and_test_gives_only_the_gate_phase_error() {
    let e = errors(BUILD_AND_TEST);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        e[0].to_string(),
        "p.yaml:18:12: phase \"review\" uses agent `hug`; only `exec` phases run in agent-exec (run LLM or human phases with their own orchestrator)"
    );
    assert_eq!(e[0].code, ErrorCode::UnsupportedAgent);
}

#[test]
fn seed_deploy_reports_the_implement_phase_not_the_dependency_on_it() {
    let e = errors(DEPLOY);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        (e[0].line, e[0].column, e[0].code),
        (4, 12, ErrorCode::UnsupportedAgent)
    );
    assert!(e[0]
        .message
        .starts_with("phase \"implement\" uses agent `cursor`"));
}

#[test]
fn seed_validate_gives_only_the_implement_phase_error() {
    assert_eq!(
        places(VALIDATE),
        vec![(12, 12, ErrorCode::UnsupportedAgent)]
    );
}

#[test]
fn seed_sample_phase_is_valid_with_seed_defaults() {
    let p = validate_str("sample.yaml", SAMPLE).unwrap();
    assert_eq!(p.file, "sample.yaml");
    let names: Vec<&str> = p.phases.iter().map(|ph| ph.name.as_str()).collect();
    assert_eq!(names, ["build", "gate"]);
    let build = &p.phases[0];
    assert_eq!(build.phase_type, "standard");
    assert!(build.commands[0].escalate_on_fail);
    let check = &p.phases[1].commands[0];
    assert!(!check.escalate_on_fail);
    assert_eq!(check.run, "test $(handoff.build.data.all_passed) = true");
    assert_eq!(check.references.len(), 1);
    assert_eq!(check.references[0].path, ["data", "all_passed"]);
    assert_eq!(p.max_parallel, None);
    assert_eq!(p.command_count(), 2);
}

#[test]
fn validate_reads_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, SAMPLE).unwrap();
    assert_eq!(validate(&path).unwrap().phases.len(), 2);

    let missing = dir.path().join("missing.yaml");
    let e = validate(&missing).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].column, e[0].code), (0, 0, ErrorCode::Io));
    let shown = e[0].to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the pipeline file:",
            missing.display()
        )),
        "{shown}"
    );
}

#[test]
fn additions_policy_timeout_env_cwd_and_max_parallel() {
    let p = validate_str(
        "p.yaml",
        "policy: ci\nmax_parallel: 3\nname: demo\nphases:\n  - name: a\n    agent: exec\n    type: smoke\n    policy: untrusted\n    timeout: 5m\n    env: {CI: true, N: 2, S: x}\n    cwd: /src\n    commands:\n      - name: one\n        run: make\n        timeout: 1.5\n        env: {S: y}\n        cwd: sub\n        policy: permissive\n      - name: two\n        run: make test\n        timeout: 30\n",
    )
    .unwrap();
    assert_eq!(p.policy.as_deref(), Some("ci"));
    assert_eq!(p.max_parallel, Some(3));
    let a = &p.phases[0];
    assert_eq!(a.phase_type, "smoke");
    assert_eq!(a.policy.as_deref(), Some("untrusted"));
    assert_eq!(a.timeout, Some(Duration::from_secs(300)));
    assert_eq!(a.env.get("CI").map(String::as_str), Some("true"));
    assert_eq!(a.env.get("N").map(String::as_str), Some("2"));
    assert_eq!(a.cwd.as_deref(), Some(std::path::Path::new("/src")));
    let one = &a.commands[0];
    assert_eq!(one.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(one.env.get("S").map(String::as_str), Some("y"));
    assert_eq!(one.policy.as_deref(), Some("permissive"));
    assert_eq!(a.commands[1].timeout, Some(Duration::from_secs(30)));
}

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    let text = "phases:\n  - name: a\n    agent: exec\n    depend_on: [b]\n    commands:\n      - name: x\n        run: [make]\n        escalate: true\nextra: 1\n";
    let e = errors(text);
    let got: Vec<(u32, u32, ErrorCode)> = e.iter().map(|e| (e.line, e.column, e.code)).collect();
    assert_eq!(
        got,
        vec![
            (4, 5, ErrorCode::UnknownKey),
            (7, 14, ErrorCode::InvalidType),
            (8, 9, ErrorCode::UnknownKey),
            (9, 1, ErrorCode::UnknownKey),
        ]
    );
    assert_eq!(
        e[0].message,
        "unknown key `depend_on` in phase \"a\" (did you mean `depends_on`? known keys: name, agent, type, depends_on, commands, policy, timeout, env, cwd)"
    );
    assert_eq!(e[1].message, "`run` must be a string, found a list");
    assert!(e[2]
        .message
        .starts_with("unknown key `escalate` in command \"x\" ("));
    assert!(e[3]
        .message
        .starts_with("unknown key `extra` in the pipeline ("));
}

#[test]
fn duplicate_phase_and_command_names() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: x, run: 'true'}\n      - {name: x, run: 'false'}\n  - name: a\n    agent: exec\n    commands:\n      - {name: y, run: 'true'}\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (6, 16, ErrorCode::DuplicateCommand),
            (7, 11, ErrorCode::DuplicatePhase)
        ]
    );
    assert_eq!(
        e[1].message,
        "phase \"a\" is defined twice (first at line 2); phase names must be unique"
    );
    assert!(e[0]
        .message
        .starts_with("command \"x\" is defined twice in phase \"a\" (first at line 5)"));
}

#[test]
fn unknown_dependency_points_at_the_list_entry() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    depends_on:\n      - a\n      - bulid\n    commands: [{name: y, run: 'true'}]\n";
    let e = errors(text);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "p.yaml:9:9: phase \"b\" depends on \"bulid\", which is not a phase of this file (phases: a, b)"
    );
    assert_eq!(e[0].code, ErrorCode::UnknownDependency);
}

#[test]
fn cycle_is_reported_once_in_order_at_its_first_edge() {
    let text = "phases:\n  - name: a\n    agent: exec\n    depends_on: [c]\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: 'true'}]\n  - name: c\n    agent: exec\n    depends_on: [b]\n    commands: [{name: x, run: 'true'}]\n  - name: s\n    agent: exec\n    depends_on: [s]\n    commands: [{name: x, run: 'true'}]\n";
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        (e[0].line, e[0].column, e[0].code),
        (4, 18, ErrorCode::DependencyCycle)
    );
    assert_eq!(
        e[0].message,
        "dependency cycle: a -> c -> b -> a (each phase depends on the next); remove one of these depends_on entries"
    );
    assert_eq!((e[1].line, e[1].column), (16, 18));
    assert!(e[1].message.starts_with("dependency cycle: s -> s "));
}

#[test]
fn exec_phase_without_commands() {
    let text = "phases:\n  - name: a\n    agent: exec\n  - name: b\n    agent: exec\n    commands: []\n  - name: c\n    agent: exec\n    commands:\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (2, 5, ErrorCode::MissingCommands),
            (6, 5, ErrorCode::MissingCommands),
            (9, 5, ErrorCode::MissingCommands),
        ]
    );
    assert_eq!(
        e[0].message,
        "exec phase \"a\" has no commands; add `commands:` with at least one `- name: …, run: …`"
    );
}

#[test]
fn missing_name_agent_and_run() {
    let text = "phases:\n  - agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    commands: [{name: x, run: 'true'}]\n  - name: c\n    agent: exec\n    commands:\n      - name: y\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (2, 5, ErrorCode::MissingField),
            (4, 5, ErrorCode::MissingField),
            (9, 9, ErrorCode::MissingField),
        ]
    );
    assert_eq!(
        e[1].message,
        "phase \"b\" has no `agent` (agent-exec runs `agent: exec` phases)"
    );
    assert_eq!(
        e[2].message,
        "command \"y\" has no `run` (the shell command line to execute)"
    );
}

#[test]
fn references_must_name_upstream_phases_and_be_well_formed() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    commands:\n      - name: y\n        run: 'echo $(handoff.a.data.total) $(handoff.zz.data.total)'\n      - name: z\n        run: |\n          set -e\n          test $(handoff.b.data.all_passed) = true\n          echo $(handoff.a.all_passed) $(date)\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (9, 20, ErrorCode::ReferenceNotUpstream),
            (9, 44, ErrorCode::UnknownPhaseReference),
            (13, 16, ErrorCode::ReferenceNotUpstream),
            (14, 16, ErrorCode::BadReference),
        ]
    );
    assert_eq!(
        e[0].message,
        "$(handoff.a.data.total) reads the handoff of phase \"a\", which is not upstream of phase \"b\"; add it to depends_on (directly or through another phase)"
    );
    assert_eq!(
        e[3].message,
        "bad reference $(handoff.a.all_passed): a handoff has only `data` and `text`; did you mean $(handoff.a.data.all_passed)?"
    );
}

#[test]
fn transitive_ancestors_may_be_referenced_and_order_is_topological() {
    let text = "phases:\n  - name: c\n    agent: exec\n    depends_on: [b]\n    commands: [{name: x, run: 'echo $(handoff.a.data.results.0.exit_code)'}]\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: 'true'}]\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n";
    let p = validate_str("p.yaml", text).unwrap();
    let order: Vec<&str> = p.phases.iter().map(|ph| ph.name.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
}

#[test]
fn bad_values_and_types() {
    let text = "max_parallel: 0\nphases:\n  - name: 'a b'\n    agent: exec\n    timeout: soon\n    env: [X]\n    commands:\n      - name: x\n        run: 'true'\n        escalate_on_fail: 'yes'\n        timeout: 0\n        env: {'A=B': 1, C: [1]}\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (1, 15, ErrorCode::InvalidValue),
            (3, 11, ErrorCode::InvalidName),
            (5, 14, ErrorCode::InvalidValue),
            (6, 10, ErrorCode::InvalidType),
            (10, 27, ErrorCode::InvalidType),
            (11, 18, ErrorCode::InvalidValue),
            (12, 15, ErrorCode::InvalidValue),
            (12, 28, ErrorCode::InvalidType),
        ]
    );
    assert_eq!(
        e[2].message,
        "invalid duration: \"soon\" (expected seconds or a number with a unit: 1.5, 500ms, 10s, 5m, 2h, 7d)"
    );
    assert_eq!(
        e[4].message,
        "`escalate_on_fail` must be true or false, found a string"
    );
}

#[test]
fn many_problems_are_reported_together_in_file_order() {
    let text = "phases:\n  - name: a\n    agent: llm\n  - name: b\n    agent: exec\n    depends_on: [nope]\n    bogus: 1\n    commands:\n      - name: x\n        run: 'echo $(handoff.a.data.total)'\n";
    let e = errors(text);
    assert_eq!(
        e.iter()
            .map(|e| (e.line, e.column, e.code))
            .collect::<Vec<_>>(),
        vec![
            (3, 12, ErrorCode::UnsupportedAgent),
            (6, 18, ErrorCode::UnknownDependency),
            (7, 5, ErrorCode::UnknownKey),
            (10, 20, ErrorCode::ReferenceNotUpstream),
        ]
    );
}

#[test]
fn yaml_syntax_and_shape_errors() {
    let e = errors("phases:\n  - name: a\n  bad: [\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].code, ErrorCode::YamlSyntax);
    assert!(
        e[0].message.starts_with("invalid YAML: "),
        "{}",
        e[0].message
    );
    assert!(e[0].line >= 2, "{:?}", e[0]);

    assert_eq!(places(""), vec![(1, 1, ErrorCode::MissingField)]);
    assert_eq!(places("- a\n"), vec![(1, 1, ErrorCode::InvalidType)]);
    assert_eq!(
        places("policy: ci\n"),
        vec![(1, 1, ErrorCode::MissingField)]
    );
    assert_eq!(
        places("phases: []\n"),
        vec![(1, 9, ErrorCode::InvalidValue)]
    );
    assert_eq!(
        places("phases: {a: 1}\n"),
        vec![(1, 9, ErrorCode::InvalidType)]
    );
    assert_eq!(
        places("phases:\n  - just-a-string\n"),
        vec![(2, 5, ErrorCode::InvalidType)]
    );
}

#[test]
fn error_serializes_with_stable_code() {
    let e = &errors(VALIDATE)[0];
    let v = serde_json::to_value(e).unwrap();
    assert_eq!(v["code"], "unsupported_agent");
    assert_eq!(v["line"], 12);
    assert_eq!(v["column"], 12);
    assert_eq!(v["file"], "p.yaml");
}

#[test]
fn plain_scalars_keep_their_written_text() {
    // YAML 1.2 booleans only: `y`/`no` stay strings; `run: true` is the command `true`.
    let text = "phases:\n  - name: y\n    agent: exec\n    env: {N: no, V: 010, F: 1.50}\n    commands:\n      - {name: 1.10, run: true}\n";
    let p = validate_str("p.yaml", text).unwrap();
    let ph = &p.phases[0];
    assert_eq!(ph.name, "y");
    assert_eq!(ph.env.get("N").map(String::as_str), Some("no"));
    assert_eq!(ph.env.get("V").map(String::as_str), Some("010"));
    assert_eq!(ph.env.get("F").map(String::as_str), Some("1.50"));
    assert_eq!(ph.commands[0].name, "1.10");
    assert_eq!(ph.commands[0].run, "true");
}

#[test]
fn repeated_reference_text_is_located_at_each_occurrence() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    commands:\n      - name: y\n        run: \"$(handoff.q) $(handoff.q)\"\n";
    assert_eq!(
        places(text),
        vec![
            (9, 15, ErrorCode::BadReference),
            (9, 28, ErrorCode::BadReference)
        ]
    );
}
