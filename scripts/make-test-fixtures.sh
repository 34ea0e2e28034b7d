#!/usr/bin/env bash
# Remakes tests/fixtures/test-output: the real output of each test runner
# the `tests` view reads (cargo test, pytest, go test with and without -v,
# jest, vitest), for the same four tests: one passes, two fail, one is
# skipped. Needs cargo, python3 (pytest is installed in a venv), go and npm
# (jest and vitest are installed in a temporary directory).
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/test-output"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
export NO_COLOR=1 CI=1 RUST_BACKTRACE=1

cd "$work" && cargo new --lib -q rs && cd rs
cat > src/lib.rs <<'RS'
pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds_small_numbers() { assert_eq!(add(1, 2), 3); }
    #[test]
    fn adds_negative_numbers() { assert_eq!(add(-1, -2), -4, "negatives add up"); }
    #[test]
    #[ignore]
    fn slow_one() {}
    #[test]
    fn panics_plainly() { panic!("boom: the widget is missing"); }
}
RS
cargo test >"$out/cargo.stdout" 2>"$out/cargo.stderr" || true

mkdir -p "$work/py" && cd "$work/py"
cat > test_calc.py <<'PY'
import pytest

def add(a, b):
    return a + b

def test_adds_small_numbers():
    assert add(1, 2) == 3

def test_adds_negative_numbers():
    assert add(-1, -2) == -4, "negatives add up"

@pytest.mark.skip(reason="slow")
def test_slow_one():
    pass

def test_raises_plainly():
    raise ValueError("boom: the widget is missing")
PY
python3 -m venv venv && venv/bin/pip install -q pytest
venv/bin/python -m pytest -p no:cacheprovider >"$out/pytest.stdout" 2>"$out/pytest.stderr" || true

mkdir -p "$work/go" && cd "$work/go"
printf 'module calc\n\ngo 1.21\n' > go.mod
cat > calc_test.go <<'GO'
package calc

import "testing"

func add(a, b int) int { return a + b }

func TestAddsSmallNumbers(t *testing.T) {
	if add(1, 2) != 3 {
		t.Fatal("wrong")
	}
}

func TestAddsNegativeNumbers(t *testing.T) {
	if got := add(-1, -2); got != -4 {
		t.Errorf("negatives add up: got %d, want -4", got)
	}
}

func TestSlowOne(t *testing.T) {
	t.Skip("slow")
}

func TestPanicsPlainly(t *testing.T) {
	t.Fatalf("boom: the widget is missing")
}
GO
go test ./... >"$out/go.stdout" 2>"$out/go.stderr" || true
go test -v ./... >"$out/go-v.stdout" 2>"$out/go-v.stderr" || true

mkdir -p "$work/js" && cd "$work/js"
echo '{"name":"calc","version":"1.0.0","private":true,"type":"module"}' > package.json
cat > calc.test.js <<'JS'
import { test, expect, describe } from "vitest";
const add = (a, b) => a + b;
describe("calc", () => {
  test("adds small numbers", () => { expect(add(1, 2)).toBe(3); });
  test("adds negative numbers", () => { expect(add(-1, -2), "negatives add up").toBe(-4); });
  test.skip("slow one", () => {});
  test("throws plainly", () => { throw new Error("boom: the widget is missing"); });
});
JS
npm install --silent --no-audit --no-fund vitest jest >/dev/null
npx vitest run >"$out/vitest.stdout" 2>"$out/vitest.stderr" || true

mkdir -p "$work/jest" && cd "$work/jest"
echo '{"name":"calcj","version":"1.0.0","private":true}' > package.json
sed -e '1d' -e 's/, "negatives add up")/)/' "$work/js/calc.test.js" > calc.test.js
"$work/js/node_modules/.bin/jest" --rootDir . >"$out/jest.stdout" 2>"$out/jest.stderr" || true

# Empty captures are not kept.
find "$out" -type f -empty -delete
echo "make-test-fixtures: $out" >&2
