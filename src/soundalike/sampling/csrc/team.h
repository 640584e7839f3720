// The thread team: the calling thread and `size - 1` helper threads run one job at a time (`run(f, n)` calls
// f(0) .. f(n - 1), each once, and returns when all are done; a small job is split into fewer parts than
// there are threads, see `parts`, and helpers 1 .. n - 1 take part). Each member claims the next unclaimed
// part through an atomic counter until none is left, so the caller never waits for a helper to start: on
// cores busy with other work (a helper descheduled for milliseconds) it simply runs the parts itself, and it
// waits only for parts a helper has begun. Work is split by output rows, and part i is always the same rows,
// so every output is computed by the same code in the same order whoever runs it and whatever the team's
// size: results are bitwise identical for any number of threads.
#pragma once
#include <cstdint>
#include <mutex>

namespace team {

// Held by every exported call for its whole duration: one call at a time uses the team and its jobs.
std::mutex& calls();

// Threads from now on (clamped to 1 .. 64) and, if min_split >= 0, the smallest job (multiply-adds) to split.
void resize(int n, int64_t min_split);
int size();

// Into how many parts to split a job of `work` multiply-adds that has `most` parts at the most: one per
// min_split of work, no more than the team's threads.
int parts(int64_t work, int64_t most);

// Where part t of n begins when `total` items are split in whole units of `unit` (the last part takes the
// rest): part t covers [begin(total, unit, t, n), begin(total, unit, t + 1, n)), whoever runs it.
inline int begin(int total, int unit, int t, int n) {
    return t == n ? total : total / unit * t / n * unit;
}

// job(ctx, 0) .. job(ctx, n - 1), each once, on this thread and whichever helpers come; returns when all are done.
void run_job(void (*job)(const void*, int), const void* ctx, int n);

template <typename F>
inline void run(const F& f, int n) {
    if (n <= 1) {
        f(0);
        return;
    }
    run_job([](const void* c, int t) { (*(const F*)c)(t); }, &f, n);
}

}  // namespace team
