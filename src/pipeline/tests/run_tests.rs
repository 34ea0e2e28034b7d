use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::fakes::{exited, Scripted, Shell};
use crate::pipeline::{
    run_pipeline, validate_str, CommandOutcome, PhaseStatus, PipelineReport, ProgressEvent,
    RunOptions, ValidatedPipeline,
};

fn pipeline(text: &str) -> ValidatedPipeline {
    validate_str("p.yaml", text).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn opts(max_parallel: usize) -> RunOptions<'static> {
    RunOptions {
        run_id: "r1".to_string(),
        max_parallel: Some(max_parallel),
        ..RunOptions::default()
    }
}

fn run(p: &ValidatedPipeline, runner: &Scripted, max_parallel: usize) -> PipelineReport {
    run_pipeline(p, runner, &opts(max_parallel), &AtomicBool::new(false))
}

fn status(r: &PipelineReport, phase: &str) -> PhaseStatus {
    r.phases.iter().find(|p| p.name == phase).unwrap().status
}

const DIAMOND: &str = "phases:\n  - name: d\n    agent: exec\n    depends_on: [b, c]\n    commands: [{name: x, run: 'true'}]\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: slow}]\n  - name: c\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: slow}]\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n";

fn sleepy() -> Scripted {
    Scripted::new(|req, _| {
        if req.run == "slow" {
            std::thread::sleep(Duration::from_millis(150));
        }
        Ok(exited(req, 0))
    })
}

#[test]
fn diamond_runs_independent_phases_in_parallel() {
    let p = pipeline(DIAMOND);
    let runner = sleepy();
    let r = run(&p, &runner, 2);
    assert!(r.all_passed, "{r:#?}");
    let order: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    let (a, b, c, d) = (
        runner.call("a", "x").unwrap(),
        runner.call("b", "x").unwrap(),
        runner.call("c", "x").unwrap(),
        runner.call("d", "x").unwrap(),
    );
    assert!(a.end <= b.start && a.end <= c.start);
    assert!(
        b.start < c.end && c.start < b.end,
        "b and c did not overlap"
    );
    assert!(d.start >= b.end && d.start >= c.end);
}

#[test]
fn max_parallel_one_serializes_the_diamond() {
    let p = pipeline(DIAMOND);
    let runner = sleepy();
    let r = run(&p, &runner, 1);
    assert!(r.all_passed);
    let (b, c) = (
        runner.call("b", "x").unwrap(),
        runner.call("c", "x").unwrap(),
    );
    assert!(b.end <= c.start || c.end <= b.start, "b and c overlapped");
}

#[test]
fn file_max_parallel_applies_without_override() {
    let text = format!("max_parallel: 1\n{DIAMOND}");
    let p = pipeline(&text);
    let runner = sleepy();
    let o = RunOptions {
        run_id: "r".into(),
        ..RunOptions::default()
    };
    run_pipeline(&p, &runner, &o, &AtomicBool::new(false));
    let (b, c) = (
        runner.call("b", "x").unwrap(),
        runner.call("c", "x").unwrap(),
    );
    assert!(b.end <= c.start || c.end <= b.start, "b and c overlapped");
}

const ESCALATE: &str = "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: ok, run: pass}\n      - {name: boom, run: fail, escalate_on_fail: true}\n      - {name: never, run: pass}\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: pass}]\n  - name: c\n    agent: exec\n    depends_on: [b]\n    commands: [{name: x, run: pass}, {name: y, run: pass}]\n  - name: soft\n    agent: exec\n    commands:\n      - {name: f, run: fail}\n      - {name: g, run: pass}\n  - name: after-soft\n    agent: exec\n    depends_on: [soft]\n    commands: [{name: x, run: pass}]\n";

fn pass_or_fail() -> Scripted {
    Scripted::new(|req, _| Ok(exited(req, if req.run == "fail" { 1 } else { 0 })))
}

#[test]
fn escalation_stops_the_phase_and_skips_everything_downstream() {
    let p = pipeline(ESCALATE);
    let runner = pass_or_fail();
    let r = run(&p, &runner, 2);
    assert!(!r.all_passed);
    assert_eq!(status(&r, "a"), PhaseStatus::Escalated);
    let a = &r.phases[0];
    assert_eq!(
        a.reason.as_deref(),
        Some("command \"boom\" failed with escalate_on_fail")
    );
    let h = a.handoff.as_ref().unwrap();
    assert_eq!(
        h.text,
        "## Exec Results\n\n✓ ok (7ms)\n✗ boom — exit code 1 (7ms)\n○ never — skipped (command \"boom\" failed with escalate_on_fail)\n\n1 of 2 commands failed. 1 skipped."
    );
    assert!(h.data.results[2].skipped);
    assert!(runner.call("a", "never").is_none());

    for phase in ["b", "c"] {
        let rep = r.phases.iter().find(|p| p.name == phase).unwrap();
        assert_eq!(rep.status, PhaseStatus::Skipped);
        assert_eq!(
            rep.reason.as_deref(),
            Some("upstream phase \"a\" escalated")
        );
        assert!(rep.handoff.is_none() && rep.started_at.is_none());
        assert!(runner.call(phase, "x").is_none());
    }
    // Without escalate_on_fail the phase goes on and its dependents still run.
    assert_eq!(status(&r, "soft"), PhaseStatus::Failed);
    assert!(runner.call("soft", "g").is_some());
    assert_eq!(status(&r, "after-soft"), PhaseStatus::Passed);

    let t = r.totals;
    assert_eq!(
        (
            t.phases,
            t.phases_passed,
            t.phases_failed,
            t.phases_escalated,
            t.phases_skipped
        ),
        (5, 1, 1, 1, 2)
    );
    // Attempted: a(ok, boom) + soft(f, g) + after-soft(x); skipped: never + b(1) + c(2).
    assert_eq!((t.commands, t.failed, t.skipped), (5, 2, 4));
}

#[test]
fn timeouts_signals_and_runner_errors_are_failures() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: slow, run: slow}\n      - {name: killed, run: killed}\n      - {name: broken, run: broken}\n";
    let runner = Scripted::new(|req, _| match req.run.as_str() {
        "slow" => Ok(CommandOutcome {
            timed_out: true,
            exit_code: None,
            signal: Some("SIGTERM".into()),
            ..exited(req, 0)
        }),
        "killed" => Ok(CommandOutcome {
            exit_code: None,
            signal: Some("SIGKILL".into()),
            ..exited(req, 0)
        }),
        _ => Err("policy \"ci\" cannot be enforced: landlock unavailable".to_string()),
    });
    let r = run(&pipeline(text), &runner, 1);
    let h = r.phases[0].handoff.as_ref().unwrap();
    assert_eq!(r.phases[0].status, PhaseStatus::Failed);
    assert_eq!(
        h.text,
        "## Exec Results\n\n✗ slow — timed out (7ms)\n✗ killed — killed by SIGKILL (7ms)\n✗ broken — error: policy \"ci\" cannot be enforced: landlock unavailable (0ms)\n\n3 of 3 commands failed."
    );
    assert!(h.data.results[0].timed_out && !h.data.results[0].pass);
    assert_eq!(h.data.results[2].job_id, None);
}

#[test]
fn requests_carry_effective_settings() {
    let text = "policy: ci\nphases:\n  - name: a\n    agent: exec\n    timeout: 1m\n    env: {A: phase, B: phase}\n    cwd: /work\n    commands:\n      - {name: one, run: x, env: {B: cmd}, policy: untrusted, timeout: 5s, cwd: /tmp}\n      - {name: two, run: y}\n";
    let runner = pass_or_fail();
    run(&pipeline(text), &runner, 1);
    let one = runner.call("a", "one").unwrap().req;
    assert_eq!(one.run_id, "r1");
    assert_eq!(one.index, 0);
    assert_eq!(one.policy.as_deref(), Some("untrusted"));
    assert_eq!(one.timeout, Some(Duration::from_secs(5)));
    assert_eq!(one.env.get("A").map(String::as_str), Some("phase"));
    assert_eq!(one.env.get("B").map(String::as_str), Some("cmd"));
    assert_eq!(one.cwd.as_deref(), Some(std::path::Path::new("/tmp")));
    let two = runner.call("a", "two").unwrap().req;
    assert_eq!(two.index, 1);
    assert_eq!(two.policy.as_deref(), Some("ci"));
    assert_eq!(two.timeout, Some(Duration::from_secs(60)));
    assert_eq!(two.env.get("B").map(String::as_str), Some("phase"));
    assert_eq!(two.cwd.as_deref(), Some(std::path::Path::new("/work")));
}

const HANDOFF_CHECK: &str = "phases:\n  - name: build\n    agent: exec\n    commands:\n      - name: make\n        run: BUILD_CMD\n  - name: gate\n    agent: exec\n    depends_on: [build]\n    commands:\n      - name: check\n        run: 'test $(handoff.build.data.all_passed) = true'\n      - name: code\n        run: 'test $(handoff.build.data.results.0.exit_code) -eq 0 && test \"$(handoff.build.data.results.0.name)\" = make'\n";

fn shell_run(build_cmd: &str) -> (PipelineReport, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(&HANDOFF_CHECK.replace("BUILD_CMD", build_cmd));
    let runner = Shell::new(dir.path().to_path_buf());
    let r = run_pipeline(&p, &runner, &opts(2), &AtomicBool::new(false));
    let runs = runner
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|q| q.run.clone())
        .collect();
    (r, runs)
}

#[test]
fn references_are_substituted_before_a_real_shell_runs_them() {
    let (r, runs) = shell_run("true");
    assert_eq!(
        runs,
        [
            "true",
            "test true = true",
            "test 0 -eq 0 && test \"make\" = make"
        ]
    );
    assert!(r.all_passed, "{r:#?}");

    let (r, runs) = shell_run("exit 3");
    assert_eq!(runs[1], "test false = true");
    assert_eq!(runs[2], "test 3 -eq 0 && test \"make\" = make");
    let gate = r.phases.iter().find(|p| p.name == "gate").unwrap();
    let h = gate.handoff.as_ref().unwrap();
    assert_eq!(gate.status, PhaseStatus::Failed);
    assert_eq!(h.data.results[0].exit_code, Some(1));
    assert_eq!(h.data.results[1].exit_code, Some(1));
}

#[test]
fn missing_field_reference_fails_that_command_without_running_it() {
    let text = "phases:\n  - name: build\n    agent: exec\n    commands: [{name: make, run: ok}]\n  - name: gate\n    agent: exec\n    depends_on: [build]\n    commands:\n      - {name: bad, run: 'echo $(handoff.build.data.nope)'}\n      - {name: idx, run: 'echo $(handoff.build.data.results.5.pass)'}\n      - {name: fine, run: 'echo $(handoff.build.data.total)'}\n";
    let runner = pass_or_fail();
    let r = run(&pipeline(text), &runner, 1);
    assert!(runner.call("gate", "bad").is_none());
    assert!(runner.call("gate", "idx").is_none());
    assert_eq!(runner.call("gate", "fine").unwrap().req.run, "echo 1");
    let gate = &r.phases[1];
    assert_eq!(gate.status, PhaseStatus::Failed);
    let h = gate.handoff.as_ref().unwrap();
    let bad = &h.data.results[0];
    assert!(!bad.pass && !bad.skipped);
    assert_eq!(bad.exit_code, None);
    assert_eq!(
        bad.reason.as_deref(),
        Some("$(handoff.build.data.nope): no such field in the handoff (found up to `handoff.build.data`)")
    );
    assert_eq!(
        h.text.lines().nth(2),
        Some("✗ bad — error: $(handoff.build.data.nope): no such field in the handoff (found up to `handoff.build.data`) (0ms)")
    );
    assert_eq!((h.data.total, h.data.failed), (3, 2));
}

#[test]
fn interrupt_cancels_once_marks_running_and_skips_the_rest() {
    let text = "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: first, run: ok}\n      - {name: long, run: long}\n      - {name: later, run: ok}\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: x, run: ok}]\n  - name: other\n    agent: exec\n    commands: [{name: x, run: ok}]\n";
    let flag = AtomicBool::new(false);
    let flag_ref: &'static AtomicBool = Box::leak(Box::new(flag));
    let runner = Scripted::new(move |req, me| {
        if req.run == "long" {
            // Plays the signal handler: the interrupt arrives while this job runs.
            flag_ref.store(true, Ordering::SeqCst);
            let cancelled = me.wait_for_cancel();
            return Ok(CommandOutcome {
                exit_code: None,
                signal: Some("SIGTERM".into()),
                interrupted: cancelled,
                ..exited(req, 0)
            });
        }
        Ok(exited(req, 0))
    });
    let p = pipeline(text);
    let r = run_pipeline(&p, &runner, &opts(1), flag_ref);
    assert!(r.interrupted && !r.all_passed);
    assert_eq!(runner.cancels.load(Ordering::SeqCst), 1);
    let a = &r.phases[0];
    assert_eq!(a.status, PhaseStatus::Failed);
    assert_eq!(a.reason.as_deref(), Some("interrupted"));
    let h = a.handoff.as_ref().unwrap();
    assert_eq!(
        h.text,
        "## Exec Results\n\n✓ first (7ms)\n✗ long — interrupted (7ms)\n○ later — skipped (interrupted)\n\n1 of 2 commands failed. 1 skipped."
    );
    assert!(h.data.results[1].interrupted);
    assert!(runner.call("a", "later").is_none());
    for name in ["b", "other"] {
        let rep = r.phases.iter().find(|p| p.name == name).unwrap();
        assert_eq!(rep.status, PhaseStatus::Skipped, "{name}");
        assert_eq!(rep.reason.as_deref(), Some("interrupted"));
    }
    assert_eq!(runner.calls().len(), 2);
}

#[test]
fn interrupt_before_start_skips_everything() {
    let runner = pass_or_fail();
    let p = pipeline(DIAMOND);
    let r = run_pipeline(&p, &runner, &opts(2), &AtomicBool::new(true));
    assert!(r.interrupted);
    assert!(r.phases.iter().all(|p| p.status == PhaseStatus::Skipped));
    assert!(runner.calls().is_empty());
    assert_eq!(runner.cancels.load(Ordering::SeqCst), 1);
    assert_eq!(r.totals.skipped, 4);
}

#[test]
fn handoffs_and_report_are_written_under_run_dir() {
    let dir = tempfile::tempdir().unwrap();
    let text = "phases:\n  - name: build\n    agent: exec\n    commands:\n      - {name: unit-tests, run: ok}\n      - {name: integration-tests, run: fail}\n  - name: gate\n    agent: exec\n    depends_on: [build]\n    commands: [{name: c, run: ok}]\n";
    let runner = pass_or_fail();
    let o = RunOptions {
        run_dir: Some(dir.path().to_path_buf()),
        ..opts(2)
    };
    let r = run_pipeline(&pipeline(text), &runner, &o, &AtomicBool::new(false));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let file = dir.path().join("handoff/build.json");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        on_disk["text"],
        "## Exec Results\n\n✓ unit-tests (7ms)\n✗ integration-tests — exit code 1 (7ms)\n\n1 of 2 commands failed."
    );
    assert_eq!(on_disk["data"]["all_passed"], false);
    assert_eq!(on_disk["data"]["total"], 2);
    assert_eq!(on_disk["data"]["failed"], 1);
    assert_eq!(on_disk["data"]["results"][1]["exit_code"], 1);
    assert_eq!(
        on_disk["data"]["results"][1]["stdout_log_path"],
        "/logs/build/integration-tests/stdout.log"
    );
    assert_eq!(
        r.phases[0].handoff_path.as_deref(),
        Some(file.to_str().unwrap())
    );
    assert!(dir.path().join("handoff/gate.json").exists());

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("pipeline.json")).unwrap())
            .unwrap();
    assert_eq!(report, serde_json::to_value(&r).unwrap());
    assert_eq!(report["phases"][0]["type"], "standard");
    assert_eq!(report["phases"][0]["status"], "failed");
}

#[test]
fn report_matches_its_published_schema() {
    let runner = pass_or_fail();
    let r = run(&pipeline(ESCALATE), &runner, 2);
    let schema = serde_json::to_value(schemars::schema_for!(PipelineReport)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let value = serde_json::to_value(&r).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    // And the schema is not vacuous: a wrong status is rejected.
    let mut broken = value.clone();
    broken["phases"][0]["status"] = "exploded".into();
    assert!(!validator.is_valid(&broken));
}

#[test]
fn progress_reports_each_command_start_and_end() {
    let lines = Mutex::new(Vec::new());
    let sink = |e: &ProgressEvent| lines.lock().unwrap().push(e.to_string());
    let runner = pass_or_fail();
    let o = RunOptions {
        progress: Some(&sink),
        ..opts(1)
    };
    let text = "phases:\n  - name: a\n    agent: exec\n    commands:\n      - {name: x, run: ok}\n      - {name: y, run: fail, escalate_on_fail: true}\n  - name: b\n    agent: exec\n    depends_on: [a]\n    commands: [{name: z, run: ok}]\n";
    run_pipeline(&pipeline(text), &runner, &o, &AtomicBool::new(false));
    let mut lines = lines.into_inner().unwrap();
    // The phase's own duration is wall-clock; check its shape, then compare the rest.
    assert!(lines[5].starts_with("[a] phase escalated (") && lines[5].ends_with("ms)"));
    lines[5] = "[a] phase escalated (Nms)".to_string();
    assert_eq!(
        lines,
        [
            "[a] phase started",
            "[a] ▶ x (1/2)",
            "[a] ✓ x (7ms)",
            "[a] ▶ y (2/2)",
            "[a] ✗ y — exit code 1 (7ms)",
            "[a] phase escalated (Nms)",
            "[b] phase skipped: upstream phase \"a\" escalated",
        ]
    );
}
