//! `agent-exec pipeline run|validate` end to end (issue 4): the seed's examples with
//! harmless local commands, the DAG's parallelism and its bound, escalation and skips,
//! handoff references, every validation error through the CLI, and Ctrl-C.
//!
//! Commands only read system directories and write inside the test's own scratch
//! directory, given to the pipeline as `cwd`, so they pass under the default policy.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SEED_BUILD_AND_TEST: &str = include_str!("../src/pipeline/testdata/seed_build_and_test.yaml");
const SEED_DEPLOY: &str = include_str!("../src/pipeline/testdata/seed_deploy.yaml");
const SEED_VALIDATE: &str = include_str!("../src/pipeline/testdata/seed_validate.yaml");

/// Writes `text` as `name` in the scratch directory, with `{cwd}` replaced by it.
fn pipeline_file(env: &Env, name: &str, text: &str) -> PathBuf {
    let scratch = env.scratch();
    let text = text.replace("{cwd}", &scratch.display().to_string());
    write_file(&scratch, name, &text)
}

/// `pipeline run FILE ARGS…`: (exit status, the JSON report, stderr).
fn run_pipeline(env: &Env, file: &Path, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["pipeline", "run", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = env.cmd(&args).output().expect("spawn agent-exec");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, v) = parse_one(&out);
    (code, v, stderr)
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {report:#}"))
}

fn result<'a>(report: &'a Value, phase_name: &str, command: &str) -> &'a Value {
    phase(report, phase_name)["handoff"]["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == command)
        .unwrap_or_else(|| panic!("no command {command} in {phase_name}: {report:#}"))
}

fn millis(v: &Value) -> u64 {
    agent_exec::timefmt::parse_rfc3339(v.as_str().expect("a timestamp"))
        .unwrap_or_else(|| panic!("not RFC 3339: {v}"))
}

/// (started, finished) of the job that ran a command, from `agent-exec status`.
fn job_window(env: &Env, r: &Value) -> (u64, u64) {
    let id = r["job_id"].as_str().expect("the command ran as a job");
    let s = env.ok(&["status", id]);
    (millis(&s["started_at"]), millis(&s["finished_at"]))
}

/// The seed's handoff `text`, rebuilt from the results (checks the exact format).
fn expected_text(results: &[Value]) -> String {
    let mut text = String::from("## Exec Results\n\n");
    let mut failed = 0;
    let mut total = 0;
    for r in results {
        let (name, ms) = (
            r["name"].as_str().unwrap(),
            r["duration_ms"].as_u64().unwrap(),
        );
        if r["skipped"] == true {
            continue;
        }
        total += 1;
        if r["pass"] == true {
            text.push_str(&format!("✓ {name} ({ms}ms)\n"));
        } else {
            failed += 1;
            let code = r["exit_code"].as_i64().unwrap();
            text.push_str(&format!("✗ {name} — exit code {code} ({ms}ms)\n"));
        }
    }
    text.push_str(&format!("\n{failed} of {total} commands failed."));
    text
}

fn assert_seed_result_shape(r: &Value) {
    assert!(r["name"].is_string(), "{r}");
    assert!(r["pass"].is_boolean(), "{r}");
    assert!(r["exit_code"].is_i64(), "{r}");
    assert!(r["duration_ms"].is_u64(), "{r}");
    let id = r["job_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(Path::new(r["stdout_log_path"].as_str().unwrap()).is_file());
    assert!(Path::new(r["stderr_log_path"].as_str().unwrap()).is_file());
    assert_cgroups_removed(id);
}

#[test]
fn seed_build_and_test_runs_each_command_as_a_job_with_the_seed_handoff() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // The seed's example without the `hug` gate; npm replaced by local commands.
    let file = pipeline_file(
        &env,
        "build.yaml",
        "phases:\n  - name: build-and-test\n    agent: exec\n    cwd: {cwd}\n    env: {GREETING: hello}\n    commands:\n      - name: install\n        run: mkdir -p node_modules\n      - name: build\n        run: echo \"$GREETING\" > dist.txt\n        escalate_on_fail: true\n      - name: unit-tests\n        run: test \"$(cat dist.txt)\" = hello && echo tests ok\n      - name: lint\n        run: sh -c 'echo lint warning >&2; exit 0'\n",
    );
    let (code, v, stderr) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 0, "{v:#}\n{stderr}");
    assert_eq!(v["type"], "pipeline");
    assert_eq!(v["ok"], true);
    assert_eq!(v["all_passed"], true);
    assert_eq!(v["interrupted"], false);
    assert_eq!(v["file"], file.display().to_string());
    assert_eq!(
        v["totals"],
        json!({"phases": 1, "phases_passed": 1, "phases_failed": 0, "phases_escalated": 0,
               "phases_skipped": 0, "commands": 4, "failed": 0, "skipped": 0})
    );
    let p = phase(&v, "build-and-test");
    assert_eq!(p["status"], "passed");
    assert_eq!(p["type"], "standard");
    let h = &p["handoff"];
    let results = h["data"]["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["install", "build", "unit-tests", "lint"]);
    for r in results {
        assert_seed_result_shape(r);
        assert_eq!(r["pass"], true);
        assert_eq!(r["exit_code"], 0);
    }
    assert_eq!(h["data"]["all_passed"], true);
    assert_eq!(h["data"]["total"], 4);
    assert_eq!(h["data"]["failed"], 0);
    assert_eq!(h["text"], expected_text(results));
    assert!(h["text"]
        .as_str()
        .unwrap()
        .ends_with("\n\n0 of 4 commands failed."));

    // The commands really ran, in order, in the given cwd, as ordinary jobs.
    assert_eq!(
        std::fs::read_to_string(env.scratch().join("dist.txt")).unwrap(),
        "hello\n"
    );
    let tests_log = results[2]["stdout_log_path"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(tests_log).unwrap(), "tests ok\n");
    let lint_err = results[3]["stderr_log_path"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(lint_err).unwrap(), "lint warning\n");
    let run_id = v["run_id"].as_str().unwrap();
    let listed = env.ok(&[
        "list",
        "--all",
        "--tag",
        &format!("pipeline.{run_id}.build-and-test"),
    ]);
    assert_eq!(listed["count"], 4, "{listed:#}");
    // The run directory beside the jobs does not disturb listings.
    assert_eq!(env.ok(&["list", "--all"])["count"], 4);
    let s = env.ok(&["status", results[1]["job_id"].as_str().unwrap()]);
    assert_eq!(
        s["argv"],
        json!(["sh", "-c", "echo \"$GREETING\" > dist.txt"])
    );
    assert_eq!(s["state"], "exited");

    // Handoffs and the report are files a later process can read.
    let run_dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    assert_eq!(run_dir, env.root().join("pipelines").join(run_id));
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("handoff/build-and-test.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(&on_disk, h);
    assert_eq!(
        p["handoff_path"],
        run_dir
            .join("handoff/build-and-test.json")
            .display()
            .to_string()
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("pipeline.json")).unwrap())
            .unwrap();
    assert_eq!(report["phases"], v["phases"]);

    // Live progress: one line per command start and end.
    for (i, name) in names.iter().enumerate() {
        assert!(
            stderr.contains(&format!("[build-and-test] ▶ {name} ({}/4)", i + 1)),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("[build-and-test] ✓ {name} (")),
            "{stderr}"
        );
    }
}

#[test]
fn seed_deploy_escalates_on_the_first_failure_and_skips_the_rest() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // The seed's deploy example without the `cursor` phase; the push fails.
    let file = pipeline_file(
        &env,
        "deploy.yaml",
        "phases:\n  - name: deploy\n    agent: exec\n    cwd: {cwd}\n    commands:\n      - name: docker-build\n        run: echo image > image.txt\n        escalate_on_fail: true\n      - name: docker-push\n        run: echo 'registry unreachable' >&2; exit 7\n        escalate_on_fail: true\n      - name: k8s-apply\n        run: touch applied.txt\n        escalate_on_fail: true\n  - name: verify\n    agent: exec\n    depends_on: [deploy]\n    commands:\n      - name: smoke\n        run: 'true'\n",
    );
    let (code, v, stderr) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["all_passed"], false);
    let deploy = phase(&v, "deploy");
    assert_eq!(deploy["status"], "escalated");
    assert_eq!(
        deploy["reason"],
        "command \"docker-push\" failed with escalate_on_fail"
    );
    let push = result(&v, "deploy", "docker-push");
    assert_eq!(push["pass"], false);
    assert_eq!(push["exit_code"], 7);
    assert_seed_result_shape(push);
    let apply = result(&v, "deploy", "k8s-apply");
    assert_eq!(apply["skipped"], true);
    assert_eq!(apply["job_id"], Value::Null);
    assert!(!env.scratch().join("applied.txt").exists());
    let data = &deploy["handoff"]["data"];
    assert_eq!(
        (data["total"].as_u64(), data["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(data["all_passed"], false);
    let text = deploy["handoff"]["text"].as_str().unwrap();
    assert!(text.contains("\n✗ docker-push — exit code 7 ("), "{text}");
    assert!(
        text.ends_with("○ k8s-apply — skipped (command \"docker-push\" failed with escalate_on_fail)\n\n1 of 2 commands failed. 1 skipped."),
        "{text}"
    );
    let verify = phase(&v, "verify");
    assert_eq!(verify["status"], "skipped");
    assert_eq!(verify["reason"], "upstream phase \"deploy\" escalated");
    assert_eq!(verify["handoff"], Value::Null);
    assert!(stderr.contains("[verify] phase skipped: upstream phase \"deploy\" escalated"));
    assert_eq!(v["totals"]["phases_escalated"], 1);
    assert_eq!(v["totals"]["phases_skipped"], 1);
    assert_eq!(v["totals"]["skipped"], 2);
}

#[test]
fn seed_validation_gate_passes_and_records_each_check() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    write_file(&env.scratch(), "schema.json", "{\"type\": \"object\"}\n");
    write_file(&env.scratch(), "config.json", "{}\n");
    // The seed's validation-gate example without the `cursor` phase; npx replaced.
    let file = pipeline_file(
        &env,
        "validate.yaml",
        "phases:\n  - name: validate\n    agent: exec\n    cwd: {cwd}\n    commands:\n      - name: schema-check\n        run: test -s schema.json && test -s config.json\n      - name: security-scan\n        run: grep -q object schema.json\n",
    );
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 0, "{v:#}");
    let h = &phase(&v, "validate")["handoff"];
    assert_eq!(h["data"]["all_passed"], true);
    assert_eq!(h["data"]["total"], 2);
    assert_eq!(
        h["text"],
        expected_text(h["data"]["results"].as_array().unwrap())
    );
}

#[test]
fn a_failing_command_without_escalation_is_recorded_and_the_phase_goes_on() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(
        &env,
        "p.yaml",
        "phases:\n  - name: test\n    agent: exec\n    cwd: {cwd}\n    commands:\n      - name: unit-tests\n        run: exit 0\n      - name: integration-tests\n        run: exit 1\n      - name: after\n        run: touch after.txt\n  - name: report\n    agent: exec\n    depends_on: [test]\n    cwd: {cwd}\n    commands:\n      - name: summary\n        run: echo $(handoff.test.data.failed) > failed.txt\n",
    );
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 1, "{v:#}");
    let test = phase(&v, "test");
    assert_eq!(test["status"], "failed");
    assert_eq!(test["reason"], Value::Null);
    let h = &test["handoff"];
    assert_eq!(
        h["text"],
        expected_text(h["data"]["results"].as_array().unwrap())
    );
    let text = h["text"].as_str().unwrap();
    assert!(
        text.contains("\n✗ integration-tests — exit code 1 ("),
        "{text}"
    );
    assert!(text.ends_with("\n\n1 of 3 commands failed."), "{text}");
    assert!(env.scratch().join("after.txt").exists());
    // A failed (not escalated) phase still hands on: its dependants run.
    assert_eq!(phase(&v, "report")["status"], "passed");
    assert_eq!(
        std::fs::read_to_string(env.scratch().join("failed.txt")).unwrap(),
        "1\n"
    );
}

const DIAMOND: &str = "phases:\n  - name: d\n    agent: exec\n    depends_on: [b, c]\n    commands: [{name: join, run: 'true'}]\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: work, run: sleep 0.8}]\n  - name: c\n    agent: exec\n    depends_on: [a]\n    commands: [{name: work, run: sleep 0.8}]\n  - name: a\n    agent: exec\n    commands: [{name: start, run: 'true'}]\n";

#[test]
fn diamond_runs_its_middle_phases_at_the_same_time() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(&env, "diamond.yaml", DIAMOND);
    let (code, v, _) = run_pipeline(&env, &file, &["--max-parallel", "2"]);
    assert_eq!(code, 0, "{v:#}");
    let order: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    // The jobs' own records: a before b and c, b and c overlapping, d after both.
    let a = job_window(&env, result(&v, "a", "start"));
    let b = job_window(&env, result(&v, "b", "work"));
    let c = job_window(&env, result(&v, "c", "work"));
    let d = job_window(&env, result(&v, "d", "join"));
    assert!(a.1 <= b.0 && a.1 <= c.0, "a {a:?} b {b:?} c {c:?}");
    assert!(
        b.0 < c.1 && c.0 < b.1,
        "b {b:?} and c {c:?} did not overlap"
    );
    assert!(
        d.0 >= b.1 && d.0 >= c.1,
        "d {d:?} started before b {b:?} / c {c:?}"
    );
    // The whole run took about one sleep, not two.
    assert!(
        v["duration_ms"].as_u64().unwrap() < 1550,
        "{}",
        v["duration_ms"]
    );
}

#[test]
fn max_parallel_one_runs_the_middle_phases_one_after_the_other() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(&env, "diamond.yaml", DIAMOND);
    let (code, v, _) = run_pipeline(&env, &file, &["--max-parallel", "1"]);
    assert_eq!(code, 0, "{v:#}");
    let b = job_window(&env, result(&v, "b", "work"));
    let c = job_window(&env, result(&v, "c", "work"));
    assert!(b.1 <= c.0 || c.1 <= b.0, "b {b:?} and c {c:?} overlapped");

    let v = env.err(
        &[
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--max-parallel",
            "0",
        ],
        "invalid_argument",
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-parallel"));
}

#[test]
fn handoff_references_are_replaced_by_the_upstream_values() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // The seed's "Downstream Access" snippet, plus indexed and string references.
    let file = pipeline_file(
        &env,
        "refs.yaml",
        "phases:\n  - name: build\n    agent: exec\n    commands:\n      - name: unit-tests\n        run: 'true'\n        escalate_on_fail: true\n      - name: lint\n        run: exit 3\n  - name: check\n    agent: exec\n    depends_on: [build]\n    cwd: {cwd}\n    commands:\n      - name: check\n        run: 'test $(handoff.build.data.all_passed) = false'\n      - name: record\n        run: echo $(handoff.build.data.results.1.exit_code) $(handoff.build.data.total) $(handoff.build.data.results.0.name) > seen.txt\n      - name: gate\n        run: 'test $(handoff.build.data.all_passed) = true'\n",
    );
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(result(&v, "check", "check")["pass"], true);
    assert_eq!(
        std::fs::read_to_string(env.scratch().join("seen.txt")).unwrap(),
        "3 2 unit-tests\n"
    );
    let gate = result(&v, "check", "gate");
    assert_eq!(gate["pass"], false);
    assert_eq!(gate["exit_code"], 1);
    // The job ran the substituted line.
    let s = env.ok(&["status", gate["job_id"].as_str().unwrap()]);
    assert_eq!(s["argv"][2], "test false = true");

    // When the build passes, the seed's own check passes.
    let file = pipeline_file(
        &env,
        "seed-gate.yaml",
        &SEED_SAMPLE.replace("run: npm test", "run: 'true'"),
    );
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 0, "{v:#}");
    let check = result(&v, "gate", "check");
    assert_eq!(check["pass"], true);
    let s = env.ok(&["status", check["job_id"].as_str().unwrap()]);
    assert_eq!(s["argv"][2], "test true = true");
}

const SEED_SAMPLE: &str = include_str!("../src/pipeline/testdata/seed_sample_phase.yaml");

#[test]
fn a_reference_to_a_missing_field_fails_that_command_only() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(
        &env,
        "missing.yaml",
        "phases:\n  - name: build\n    agent: exec\n    commands: [{name: compile, run: 'true'}]\n  - name: use\n    agent: exec\n    depends_on: [build]\n    cwd: {cwd}\n    commands:\n      - name: bad\n        run: echo $(handoff.build.data.coverage) > bad.txt\n      - name: out-of-range\n        run: echo $(handoff.build.data.results.5.exit_code)\n      - name: fine\n        run: touch fine.txt\n",
    );
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 1, "{v:#}");
    let use_phase = phase(&v, "use");
    assert_eq!(use_phase["status"], "failed");
    for name in ["bad", "out-of-range"] {
        let r = result(&v, "use", name);
        assert_eq!(r["pass"], false, "{r}");
        assert_eq!(r["skipped"], false, "{r}");
        assert_eq!(
            r["job_id"],
            Value::Null,
            "no job runs with a broken line: {r}"
        );
        assert_eq!(r["exit_code"], Value::Null);
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains("$(handoff.build.data."), "{reason}");
    }
    assert!(!env.scratch().join("bad.txt").exists());
    assert!(env.scratch().join("fine.txt").exists());
    assert_eq!(use_phase["handoff"]["data"]["failed"], 2);
}

#[test]
fn a_timeout_is_a_failure_marked_timed_out() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(
        &env,
        "slow.yaml",
        "phases:\n  - name: slow\n    agent: exec\n    timeout: 0.3\n    commands:\n      - name: hang\n        run: sleep 5\n      - name: quick\n        run: 'true'\n        timeout: 5\n",
    );
    let started = Instant::now();
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(code, 1, "{v:#}");
    let hang = result(&v, "slow", "hang");
    assert_eq!(hang["pass"], false);
    assert_eq!(hang["timed_out"], true);
    assert!(hang["duration_ms"].as_u64().unwrap() >= 300);
    let text = phase(&v, "slow")["handoff"]["text"].as_str().unwrap();
    assert!(text.contains("✗ hang — timed out ("), "{text}");
    assert_eq!(result(&v, "slow", "quick")["pass"], true);
    assert_cgroups_removed(hang["job_id"].as_str().unwrap());
}

/// (line, column, code) of every error of a `pipeline_invalid` answer.
fn problems(v: &Value) -> Vec<(u64, u64, String)> {
    assert_eq!(v["error"]["code"], "pipeline_invalid", "{v:#}");
    v["error"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert!(!e["message"].as_str().unwrap().is_empty());
            assert!(e["file"].is_string());
            (
                e["line"].as_u64().unwrap(),
                e["column"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn validate_text(env: &Env, name: &str, text: &str) -> Value {
    let file = pipeline_file(env, name, text);
    let v = env.err(
        &["pipeline", "validate", file.to_str().unwrap()],
        "pipeline_invalid",
    );
    for e in v["error"]["errors"].as_array().unwrap() {
        assert_eq!(e["file"], file.display().to_string());
    }
    v
}

#[test]
fn the_unmodified_seed_examples_fail_only_on_their_non_exec_phases() {
    let env = Env::new();
    let cases = [
        (
            "build_and_test.yaml",
            SEED_BUILD_AND_TEST,
            18,
            "review",
            "hug",
        ),
        ("deploy.yaml", SEED_DEPLOY, 4, "implement", "cursor"),
        ("validate.yaml", SEED_VALIDATE, 12, "implement", "cursor"),
    ];
    for (name, text, line, phase_name, agent) in cases {
        let v = validate_text(&env, name, text);
        assert_eq!(
            problems(&v),
            vec![(line, 12, "unsupported_agent".to_string())],
            "{name}: {v:#}"
        );
        let message = v["error"]["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "phase \"{phase_name}\" uses agent `{agent}`; only `exec` phases run in agent-exec"
            )),
            "{message}"
        );
        assert_eq!(v["error"]["location"]["line"], line);
        // `run` refuses the same file before creating any job.
        let file = env.scratch().join(name);
        let r = env.err(
            &["pipeline", "run", file.to_str().unwrap()],
            "pipeline_invalid",
        );
        assert_eq!(problems(&r), problems(&v));
    }
    if privileged() {
        assert_eq!(env.ok(&["list"])["count"], 0);
    }

    let file = pipeline_file(&env, "sample.yaml", SEED_SAMPLE);
    let v = env.ok(&["pipeline", "validate", file.to_str().unwrap()]);
    assert_eq!(v["type"], "pipeline_validation");
    assert_eq!(v["phases"], 2);
    assert_eq!(v["commands"], 2);
    assert_eq!(v["order"], json!(["build", "gate"]));
}

#[test]
fn every_validation_error_kind_is_reported_with_its_place() {
    let env = Env::new();
    let own = |v: Vec<(u64, u64, &str)>| -> Vec<(u64, u64, String)> {
        v.into_iter()
            .map(|(l, c, k)| (l, c, k.to_string()))
            .collect()
    };

    let v = validate_text(
        &env,
        "keys.yaml",
        "phases:\n  - name: a\n    agent: exec\n    depend_on: [b]\n    commands:\n      - name: x\n        run: [make]\n        escalate: true\nextra: 1\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (4, 5, "unknown_key"),
            (7, 14, "invalid_type"),
            (8, 9, "unknown_key"),
            (9, 1, "unknown_key"),
        ])
    );
    assert!(v["error"]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `depends_on`?"));

    let v = validate_text(
        &env,
        "dups.yaml",
        "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: x, run: 'true'}\n      - {name: x, run: 'false'}\n  - name: a\n    agent: exec\n    commands:\n      - {name: y, run: 'true'}\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (6, 16, "duplicate_command"),
            (7, 11, "duplicate_phase")
        ])
    );

    let v = validate_text(
        &env,
        "deps.yaml",
        "phases:\n  - name: a\n    agent: exec\n    depends_on: [c]\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    depends_on: [a, bulid]\n    commands: [{name: x, run: 'true'}]\n  - name: c\n    agent: exec\n    depends_on: [b]\n    commands: [{name: x, run: 'true'}]\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (4, 18, "dependency_cycle"),
            (8, 21, "unknown_dependency")
        ])
    );
    assert_eq!(
        v["error"]["errors"][0]["message"],
        "dependency cycle: a -> c -> b -> a (each phase depends on the next); remove one of these depends_on entries"
    );

    let v = validate_text(
        &env,
        "shape.yaml",
        "phases:\n  - agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n  - name: c\n    agent: llm\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (2, 5, "missing_field"),
            (4, 5, "missing_commands"),
            (7, 12, "unsupported_agent"),
        ])
    );

    let v = validate_text(
        &env,
        "values.yaml",
        "max_parallel: 0\nphases:\n  - name: 'a b'\n    agent: exec\n    timeout: soon\n    commands:\n      - name: x\n        run: 'true'\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (1, 15, "invalid_value"),
            (3, 11, "invalid_name"),
            (5, 14, "invalid_value"),
        ])
    );

    let v = validate_text(
        &env,
        "refs.yaml",
        "phases:\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    commands:\n      - name: y\n        run: 'echo $(handoff.a.data.total) $(handoff.zz.data.total)'\n      - name: z\n        run: echo $(handoff.a.all_passed)\n",
    );
    assert_eq!(
        problems(&v),
        own(vec![
            (9, 20, "reference_not_upstream"),
            (9, 44, "unknown_phase_reference"),
            (11, 19, "bad_reference"),
        ])
    );

    let v = validate_text(&env, "syntax.yaml", "phases:\n  - name: a\n  bad: [\n");
    let p = problems(&v);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].2, "yaml_syntax");
    assert!(p[0].0 >= 2, "{p:?}");

    let missing = env.scratch().join("nope.yaml");
    let v = env.err(
        &["pipeline", "validate", missing.to_str().unwrap()],
        "pipeline_invalid",
    );
    assert_eq!(problems(&v), own(vec![(0, 0, "io")]));
    assert!(v["error"].get("location").is_none(), "{v:#}");
}

#[test]
fn ctrl_c_kills_every_running_job_and_still_prints_the_report() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let n = std::process::id() % 10_000;
    let (marker, marker2) = (format!("sleep 1001.{n}"), format!("sleep 1002.{n}"));
    let file = pipeline_file(
        &env,
        "long.yaml",
        &format!(
            "phases:\n  - name: quick\n    agent: exec\n    commands: [{{name: ok, run: 'true'}}]\n  - name: long\n    agent: exec\n    commands:\n      - name: wait\n        run: {marker}\n      - name: after\n        run: 'true'\n  - name: also-long\n    agent: exec\n    commands:\n      - name: wait-too\n        run: sh -c '{marker2} & {marker2}; wait'\n  - name: later\n    agent: exec\n    depends_on: [long]\n    commands: [{{name: never, run: 'true'}}]\n"
        ),
    );
    let mut child = env
        .cmd(&[
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--max-parallel",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both long phases are running: the direct sleep and the two of the shell.
    eventually("the long commands to run", Duration::from_secs(20), || {
        let sleeps = |m: &str| {
            processes_matching(m)
                .iter()
                .filter(|(_, cmd)| cmd.starts_with("sleep "))
                .count()
        };
        sleeps(&marker) == 1 && sleeps(&marker2) == 2
    });
    // SAFETY: signalling the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let sent = Instant::now();
    eventually("agent-exec to finish", Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(sent.elapsed() < Duration::from_secs(10));
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let out = Output {
        status,
        stdout,
        stderr,
    };
    let (code, v) = parse_one(&out);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["all_passed"], false);

    // Nothing of either job survives: no process, no cgroup.
    for m in [&marker, &marker2] {
        assert!(
            processes_matching(m).is_empty(),
            "left behind: {:?}",
            processes_matching(m)
        );
    }
    let wait = result(&v, "long", "wait");
    assert_eq!(wait["interrupted"], true, "{wait}");
    assert_eq!(wait["pass"], false);
    let after = result(&v, "long", "after");
    assert_eq!(after["skipped"], true);
    assert_eq!(after["reason"], "interrupted");
    assert_eq!(phase(&v, "long")["status"], "failed");
    assert_eq!(phase(&v, "long")["reason"], "interrupted");
    let text = phase(&v, "long")["handoff"]["text"].as_str().unwrap();
    assert!(text.contains("✗ wait — interrupted ("), "{text}");
    let wait_too = result(&v, "also-long", "wait-too");
    assert_eq!(wait_too["interrupted"], true, "{wait_too}");
    assert_eq!(phase(&v, "later")["status"], "skipped");
    assert_eq!(phase(&v, "later")["reason"], "interrupted");
    assert_eq!(phase(&v, "quick")["status"], "passed");
    for r in [wait, wait_too] {
        let id = r["job_id"].as_str().unwrap();
        assert_cgroups_removed(id);
        let s = env.ok(&["status", id]);
        assert_eq!(s["state"], "killed", "{s:#}");
    }
    // The report on disk says the same.
    let run_dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("pipeline.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["interrupted"], true);
}

#[test]
fn policies_come_from_the_command_the_phase_the_file_or_the_command_line() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let file = pipeline_file(
        &env,
        "policies.yaml",
        "policy: ci\nphases:\n  - name: a\n    agent: exec\n    policy: untrusted\n    commands:\n      - {name: phase-level, run: 'true'}\n      - {name: command-level, run: 'true', policy: permissive}\n  - name: b\n    agent: exec\n    commands:\n      - {name: top-level, run: 'true'}\n      - {name: unknown, run: 'true', policy: no-such-policy}\n",
    );
    let policy_of = |env: &Env, r: &Value| -> String {
        let s = env.ok(&["status", r["job_id"].as_str().unwrap()]);
        s["policy"].as_str().unwrap().to_string()
    };
    let (code, v, _) = run_pipeline(&env, &file, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(policy_of(&env, result(&v, "a", "phase-level")), "untrusted");
    assert_eq!(
        policy_of(&env, result(&v, "a", "command-level")),
        "permissive"
    );
    assert_eq!(policy_of(&env, result(&v, "b", "top-level")), "ci");
    // A policy that does not resolve fails that command before any job exists.
    let unknown = result(&v, "b", "unknown");
    assert_eq!(unknown["pass"], false);
    assert_eq!(unknown["job_id"], Value::Null);
    assert!(
        unknown["reason"]
            .as_str()
            .unwrap()
            .contains("no-such-policy"),
        "{unknown}"
    );

    // --policy replaces the file's top-level default only.
    let (_, v, _) = run_pipeline(&env, &file, &["--policy", "permissive"]);
    assert_eq!(policy_of(&env, result(&v, "b", "top-level")), "permissive");
    assert_eq!(policy_of(&env, result(&v, "a", "phase-level")), "untrusted");

    // Without any policy, commands get the default sandbox.
    let plain = pipeline_file(
        &env,
        "plain.yaml",
        "phases:\n  - {name: p, agent: exec, commands: [{name: x, run: 'true'}]}\n",
    );
    let (code, v, _) = run_pipeline(&env, &plain, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(policy_of(&env, result(&v, "p", "x")), "default");
}

/// A pipeline file is a regular file of at most 1 MiB: a device or a FIFO
/// is refused at once, never read without end.
#[test]
fn a_pipeline_file_that_is_not_a_regular_file_is_refused() {
    let env = Env::new();
    for path in ["/dev/zero", "/dev/stdin"] {
        let began = std::time::Instant::now();
        let (code, v) = env.run(&["pipeline", "validate", path]);
        assert_eq!(code, 1, "{v:#}");
        assert_eq!(v["error"]["code"], "pipeline_invalid", "{v:#}");
        assert!(began.elapsed() < std::time::Duration::from_secs(5));
    }
    let big = env.scratch().join("big.yaml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    let (_, v) = env.run(&["pipeline", "validate", big.to_str().unwrap()]);
    assert!(v.to_string().contains("larger than"), "{v:#}");
}
