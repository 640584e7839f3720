// A driver for the thread team under ThreadSanitizer (tests/sampling/test_team.py builds it with
// -fsanitize=thread and fails on any report). Several caller threads, each holding team::calls() as the
// library's entry points do, run jobs of 1 to 64 parts of uneven work on teams of 1 to 8 threads, resized
// between jobs and left idle long enough for the helpers to fall asleep; every part must run exactly once and
// its result be visible to the caller when run() returns. With the argument "race" it runs one job whose
// parts write the same variable, which TSan must report (the test's check that it is watching).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../team.h"

namespace {

int failures = 0;

void check(bool ok, const char* what, int caller, int job, int part) {
    if (ok) return;
    std::fprintf(stderr, "FAILED: %s (caller %d, job %d, part %d)\n", what, caller, job, part);
    failures++;
}

// Part t of a job: uneven work (so that helpers are still busy when the caller runs out of parts), then its
// result, written by whichever thread runs it and read by the caller after run().
int64_t work(int job, int t) {
    int64_t v = job * 1000 + t;
    for (int i = 0; i < (t % 7) * 200; i++) v = v * 6364136223846793005LL + 1442695040888963407LL;
    return v;
}

void caller(int id, int jobs) {
    std::vector<int64_t> out(64);
    std::vector<int> runs(64);
    for (int job = 0; job < jobs; job++) {
        std::lock_guard<std::mutex> lock(team::calls());
        if (job % 50 == 0) team::resize(1 + (job / 50 + id) % 8, 0);  // 1 .. 8 threads, every job split
        const int n = 1 + (job * 7 + id) % 64;
        std::fill(runs.begin(), runs.end(), 0);
        team::run([&](int t) {
            out[t] = work(job, t);
            runs[t]++;
        }, n);
        for (int t = 0; t < 64; t++) check(runs[t] == (t < n), "each part runs once", id, job, t);
        for (int t = 0; t < n; t++) check(out[t] == work(job, t), "a part's result", id, job, t);
        if (job % 97 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));  // helpers fall asleep
    }
}

void partitions() {
    for (int total = 0; total < 300; total += 7)
        for (int unit : {1, 4, 16})
            for (int n = 1; n <= 9; n++) {
                int next = 0;
                for (int t = 0; t < n; t++) {
                    check(team::begin(total, unit, t, n) == next, "parts are contiguous", -1, total, t);
                    next = team::begin(total, unit, t + 1, n);
                    check(next >= team::begin(total, unit, t, n), "parts are ordered", -1, total, t);
                }
                check(next == total, "parts cover the total", -1, total, n);
            }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "race") == 0) {
        team::resize(4, 0);
        int shared = 0;
        // Each part sleeps first, so that the helpers claim some of them.
        for (int job = 0; job < 20; job++)
            team::run([&](int t) {
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                shared += t;
            }, 4);
        std::printf("racy job ran (%d)\n", shared);
        return 0;
    }
    partitions();
    const int callers = 3, jobs = 2000;
    std::vector<std::thread> threads;
    for (int id = 0; id < callers; id++) threads.emplace_back(caller, id, jobs);
    for (auto& t : threads) t.join();
    if (failures) return 1;
    std::printf("%d callers x %d jobs of 1 to 64 parts on teams of 1 to 8 threads: ok\n", callers, jobs);
    return 0;
}
