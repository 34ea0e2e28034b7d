//! Graph algorithms over phases: order, cycles, ancestry.
//!
//! Nodes are phase indices; `deps[i]` lists the phases `i` depends on. Pipelines are
//! small (tens of phases), so clarity wins over asymptotics; nothing here recurses,
//! so a hostile file cannot overflow the stack.

use std::collections::{BTreeSet, VecDeque};

/// Dependencies-first order, file order among phases that are ready together.
/// `None` when the graph has a cycle.
pub(crate) fn topo_order(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let n = deps.len();
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(j);
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// Every phase reachable from `start` through `deps` (not including `start` unless cyclic).
pub(crate) fn ancestors(start: usize, deps: &[Vec<usize>]) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<usize> = deps[start].iter().copied().collect();
    while let Some(i) = queue.pop_front() {
        if seen.insert(i) {
            queue.extend(deps[i].iter().copied());
        }
    }
    seen
}

/// One shortest cycle per strongly connected group, each as `[a, b, …]` meaning
/// a depends on b depends on … depends on a, starting at the group's first phase.
pub(crate) fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut reverse = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            reverse[d].push(i);
        }
    }
    let mut covered = vec![false; n];
    let mut found = Vec::new();
    for start in 0..n {
        if covered[start] {
            continue;
        }
        let Some(path) = shortest_cycle(start, deps) else {
            continue;
        };
        // Members of start's group: reachable from it and reaching it.
        let forward = ancestors(start, deps);
        let backward = ancestors(start, &reverse);
        for i in forward.intersection(&backward) {
            covered[*i] = true;
        }
        found.push(path);
    }
    found
}

/// Breadth-first search from `start` back to itself; the path excludes the final repeat.
fn shortest_cycle(start: usize, deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = vec![None; deps.len()];
    let mut queue = VecDeque::new();
    for &d in &deps[start] {
        if d == start {
            return Some(vec![start]);
        }
        if parent[d].is_none() {
            parent[d] = Some(start);
            queue.push_back(d);
        }
    }
    while let Some(i) = queue.pop_front() {
        for &d in &deps[i] {
            if d == start {
                let mut path = vec![i];
                let mut cur = i;
                while let Some(p) = parent[cur] {
                    if p == start {
                        break;
                    }
                    path.push(p);
                    cur = p;
                }
                path.push(start);
                path.reverse();
                return Some(path);
            }
            if parent[d].is_none() && d != start {
                parent[d] = Some(i);
                queue.push_back(d);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topo_order_is_stable_and_dependency_first() {
        // 0 depends on 2, 1 has no deps, 2 depends on 1.
        assert_eq!(topo_order(&[vec![2], vec![], vec![1]]), Some(vec![1, 2, 0]));
        // Diamond: 0; 1,2 -> 0; 3 -> 1,2.
        assert_eq!(
            topo_order(&[vec![], vec![0], vec![0], vec![1, 2]]),
            Some(vec![0, 1, 2, 3])
        );
        assert_eq!(topo_order(&[vec![1], vec![0]]), None);
    }

    #[test]
    fn ancestors_are_transitive() {
        let deps = [vec![], vec![0], vec![1], vec![]];
        assert_eq!(ancestors(2, &deps), BTreeSet::from([0, 1]));
        assert!(ancestors(3, &deps).is_empty());
    }

    #[test]
    fn cycles_are_reported_once_per_group_in_dependency_order() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0 (outside any cycle).
        let deps = [vec![1], vec![2], vec![0], vec![3], vec![0]];
        assert_eq!(cycles(&deps), vec![vec![0, 1, 2], vec![3]]);
        assert!(cycles(&[vec![], vec![0]]).is_empty());
        // Two cycles sharing node 0 form one group; the shorter one is shown.
        let deps = [vec![1, 2], vec![0], vec![3], vec![0]];
        assert_eq!(cycles(&deps), vec![vec![0, 1]]);
    }
}
