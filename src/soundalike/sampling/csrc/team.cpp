// The thread team of team.h. Helpers spin between jobs (a job comes every few microseconds while sampling),
// then yield the core, then sleep once idle for a few milliseconds.
#include "team.h"

#include <atomic>
#include <condition_variable>
#include <thread>
#include <unistd.h>

namespace team {
namespace {

struct State {
    int size = 1, created = 0;
    int64_t min_split = 0;
    pid_t pid = 0;
    // The current job's number << 8 | its number of parts: what wakes the helpers.
    std::atomic<uint64_t> word{0};
    // The current job's number << 8 | its next unclaimed part. A member claims a part by advancing it, which
    // succeeds only while the job is the one it was woken for: then `job` and `ctx`, set before the job was
    // published, are that job's, and the caller does not change them before every part is done.
    std::atomic<uint64_t> claim{0};
    std::atomic<int> done{0};  // parts of the current job finished
    std::atomic<int> sleeping{0};
    void (*job)(const void*, int) = nullptr;
    const void* ctx = nullptr;
    std::mutex m;
    std::condition_variable cv;
};

State* state = new State;  // never destroyed: detached helpers may outlive static destructors

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Run unclaimed parts of job `id` (of n parts) until none is left.
void run_parts(State* s, uint64_t id, int n) {
    uint64_t c = s->claim.load(std::memory_order_acquire);
    while ((c >> 8) == id && (int)(c & 255) < n) {
        if (s->claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
            s->job(s->ctx, (int)(c & 255));
            s->done.fetch_add(1, std::memory_order_acq_rel);
            c = s->claim.load(std::memory_order_acquire);
        }
    }
}

void helper(State* s, int t, uint64_t seen) {
    for (;;) {
        uint64_t w;
        for (int spins = 0; (w = s->word.load(std::memory_order_acquire)) == seen;) {
            if (++spins < (1 << 10)) { pause(); continue; }
            if (spins < (1 << 14)) { std::this_thread::yield(); continue; }  // let a descheduled caller run
            std::unique_lock<std::mutex> lock(s->m);
            s->sleeping.fetch_add(1);
            s->cv.wait(lock, [&] { return s->word.load() != seen; });
            s->sleeping.fetch_sub(1);
        }
        seen = w;
        if (t < (int)(w & 255)) run_parts(s, w >> 8, (int)(w & 255));  // helpers 1 .. n - 1 of an n-part job
    }
}

}  // namespace

std::mutex& calls() {
    static std::mutex* m = new std::mutex;  // never destroyed, like the state
    return *m;
}

void resize(int n, int64_t min_split) {
    if (state->pid != getpid()) {  // first use, or a forked child (which has none of the parent's helpers)
        if (state->pid) state = new State;
        state->pid = getpid();
    }
    if (min_split >= 0) state->min_split = min_split;
    n = n < 1 ? 1 : n > 64 ? 64 : n;
    while (state->created < n - 1)
        std::thread(helper, state, ++state->created, state->word.load()).detach();
    state->size = n;
}

int size() { return state->size; }

int parts(int64_t work, int64_t most) {
    const State* s = state;
    int64_t p = s->min_split > 0 ? work / s->min_split : s->size;
    p = p < s->size ? p : s->size;
    p = p < most ? p : most;
    return p < 1 ? 1 : (int)p;
}

void run_job(void (*job)(const void*, int), const void* ctx, int n) {
    State* s = state;
    const uint64_t id = (s->word.load(std::memory_order_relaxed) >> 8) + 1;
    s->job = job;
    s->ctx = ctx;
    s->done.store(0, std::memory_order_relaxed);
    s->claim.store(id << 8, std::memory_order_release);
    // seq_cst, like the helper's `sleeping` increment and its load of `word`: either it sees this job or
    // this sees it sleeping (and wakes it).
    s->word.store(id << 8 | (uint64_t)n);
    if (s->sleeping.load() > 0) {
        std::lock_guard<std::mutex> lock(s->m);
        s->cv.notify_all();
    }
    run_parts(s, id, n);
    // Parts a helper has begun: spin, then yield (that helper may need this very core).
    for (int spins = 0; s->done.load(std::memory_order_acquire) < n;)
        if (++spins < (1 << 10)) pause(); else std::this_thread::yield();
}

}  // namespace team
