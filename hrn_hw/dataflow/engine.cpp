// Compiled twin of the discrete-event engine in engine.py (the specification).
//
// The rules, their order and every tie-break follow engine.py's `_Run` step by step, so every
// output is the same integer: the heap is keyed by (time, kind, sample, job) like the Python
// tuples; `settle` serves pools in index order, each on its lowest-index idle server, then
// admits, and repeats until nothing changes. Two changes of representation, not of behaviour:
// - arrival events are not pushed: an arrival only makes its cycle a round (it comes last among
//   the events of its cycle and does nothing), so the next arrival cycle is merged with the
//   heap's top instead;
// - a pool's scan for "queue not empty and a server idle" uses bit sets (actionable pools, idle
//   servers) that find the same pools and servers the Python loops find, in the same order.
//
// Entry point: hrn_dataflow_simulate (extern "C"); arrays are int64, outputs are allocated by
// the caller. Return codes: 0 ok, 1 deadlock (info and stuck say where), 2 a problem too large
// for 31-bit sample and job ids, 3 out of memory, 4 trace buffer too small, 5 other failure.

#include <cstdint>
#include <exception>
#include <new>
#include <vector>

namespace {

using i64 = std::int64_t;
using u64 = std::uint64_t;
using i32 = std::int32_t;

constexpr u64 END = 0, HANDOFF = 1, ENTRY = 2;   // ARRIVAL (3) is merged, see above
constexpr i64 UNBOUNDED = -1;
constexpr i64 MAX_ID = (i64(1) << 31) - 1;
constexpr int TRACE_WIDTH = 6;

enum Code { OK = 0, DEADLOCK = 1, TOO_LARGE = 2, NO_MEMORY = 3, TRACE_FULL = 4, FAILED = 5 };

struct Event {
    i64 time;
    u64 key;      // kind << 62 | sample << 31 | job: the tuple's order in one comparison
    i32 server;   // payload (END, HANDOFF): the server that runs (sample, job)
};

inline bool before(const Event& a, const Event& b) {
    return a.time < b.time || (a.time == b.time && a.key < b.key);
}

inline u64 event_key(u64 kind, i64 sample, i64 job) {
    return kind << 62 | u64(sample) << 31 | u64(job);
}

// Binary min-heap of events (keys are unique, so the pop order is the sorted order).
class Heap {
    std::vector<Event> v_;

public:
    bool empty() const { return v_.empty(); }
    const Event& top() const { return v_.front(); }

    void push(const Event& e) {
        std::size_t i = v_.size();
        v_.push_back(e);
        while (i > 0) {
            std::size_t parent = (i - 1) / 2;
            if (!before(e, v_[parent])) break;
            v_[i] = v_[parent];
            i = parent;
        }
        v_[i] = e;
    }

    Event pop() {
        Event out = v_.front();
        Event last = v_.back();
        v_.pop_back();
        std::size_t n = v_.size(), i = 0;
        if (n == 0) return out;
        for (;;) {
            std::size_t child = 2 * i + 1;
            if (child >= n) break;
            if (child + 1 < n && before(v_[child + 1], v_[child])) ++child;
            if (!before(v_[child], last)) break;
            v_[i] = v_[child];
            i = child;
        }
        v_[i] = last;
        return out;
    }
};

// FIFO ring buffer that doubles when full.
template <class T>
class Ring {
    std::vector<T> buf_;
    std::size_t head_ = 0, size_ = 0;

    void grow() {
        std::vector<T> bigger(buf_.empty() ? 4 : 2 * buf_.size());
        for (std::size_t i = 0; i < size_; ++i) bigger[i] = buf_[(head_ + i) & (buf_.size() - 1)];
        buf_.swap(bigger);
        head_ = 0;
    }

public:
    bool empty() const { return size_ == 0; }
    std::size_t size() const { return size_; }
    const T& front() const { return buf_[head_]; }

    void pop_front() {
        head_ = (head_ + 1) & (buf_.size() - 1);
        --size_;
    }

    void push_back(const T& x) {
        if (size_ == buf_.size()) grow();
        buf_[(head_ + size_) & (buf_.size() - 1)] = x;
        ++size_;
    }
};

// Fixed-size bit set with "first set bit in [from, end)".
class Bits {
    std::vector<u64> w_;

public:
    explicit Bits(i64 n) : w_((n + 63) / 64, 0) {}
    void set(i64 i) { w_[i >> 6] |= u64(1) << (i & 63); }
    void clear(i64 i) { w_[i >> 6] &= ~(u64(1) << (i & 63)); }

    i64 next(i64 from, i64 end) const {
        if (from >= end) return end;
        i64 idx = from >> 6;
        u64 word = w_[idx] & (~u64(0) << (from & 63));
        while (word == 0) {
            if (++idx * 64 >= end) return end;
            word = w_[idx];
        }
        i64 found = idx * 64 + __builtin_ctzll(word);
        return found < end ? found : end;
    }
};

struct Job {
    i64 delay, duration, lead;
    i32 pool;
    bool last;   // the last job of its chain
};

struct Server {
    i64 free_at = 0;      // end of the current service
    i64 trace_row = -1;
    i32 pool = 0;
    bool serving_done = false;
    bool moved = false;
};

struct Queued { i32 sample, job; };
struct Waiter { i32 sample, job, server; };

struct Inputs {
    i64 S, P, C, J, N;
    const i64 *pool_servers, *pool_capacity, *chain_start;
    const i64 *job_pool, *job_delay, *job_duration, *job_lead;
    const i64 *sample_class, *arrival;
    i64 in_flight, trace_samples;
};

struct Outputs {
    i64 *admit, *done, *busy, *blocked, *max_queue, *trace;
    i64 trace_rows;
};

class Run {
    const Inputs& in_;
    const Outputs& out_;
    std::vector<Job> jobs_;
    std::vector<Server> servers_;
    std::vector<i64> pool_lo_, pool_hi_, idle_count_;
    std::vector<Ring<Queued>> queue_;
    std::vector<Ring<Waiter>> waiting_;
    Bits idle_, actionable_;
    Heap heap_;
    i64 next_sample_ = 0, inflight_ = 0, finished_ = 0, area_ = 0, now_ = 0, trace_used_ = 0;
    i64* progress_ = nullptr;   // finished samples, published every 4,096 for a progress bar
    bool trace_full_ = false;

    i64 first_job(i64 sample) const { return in_.chain_start[in_.sample_class[sample]]; }

    bool room(i64 p) const {
        i64 cap = in_.pool_capacity[p];
        return cap == UNBOUNDED || i64(queue_[p].size()) < cap;
    }

    // Keep pool p's bit equal to "queue not empty and a server idle".
    void refresh(i64 p) {
        if (!queue_[p].empty() && idle_count_[p] > 0) actionable_.set(p);
        else actionable_.clear(p);
    }

    void push(i64 time, u64 kind, i64 sample, i64 job, i64 server) {
        heap_.push(Event{time, event_key(kind, sample, job), i32(server)});
    }

    void enqueue(i64 p, i64 sample, i64 job) {
        Ring<Queued>& q = queue_[p];
        q.push_back(Queued{i32(sample), i32(job)});
        if (i64(q.size()) > out_.max_queue[p]) out_.max_queue[p] = i64(q.size());
        refresh(p);
    }

    void release(i64 s) {
        Server& srv = servers_[s];
        out_.blocked[s] += now_ - srv.free_at;
        idle_.set(s);
        ++idle_count_[srv.pool];
        refresh(srv.pool);
        if (srv.trace_row >= 0) {
            out_.trace[srv.trace_row * TRACE_WIDTH + 5] = now_;
            srv.trace_row = -1;
        }
    }

    // The sample of server s left it: release s once its service is over.
    void moved_on(i64 s) {
        servers_[s].moved = true;
        if (servers_[s].serving_done) release(s);
    }

    // Move `sample` to `job` (its previous job ran on `server`, -1 on admission); it waits,
    // holding `server`, while the job's queue is full.
    void hand_to(i64 sample, i64 job, i64 server) {
        const Job& jb = jobs_[job];
        if (jb.delay > 0) {
            push(now_ + jb.delay, ENTRY, sample, job, -1);
        } else if (room(jb.pool)) {
            enqueue(jb.pool, sample, job);
        } else {
            waiting_[jb.pool].push_back(Waiter{i32(sample), i32(job), i32(server)});
            return;
        }
        if (server >= 0) moved_on(server);
    }

    void end(i64 sample, i64 job, i64 s) {
        Server& srv = servers_[s];
        srv.serving_done = true;
        if (jobs_[job].last) {
            out_.done[sample] = now_;
            --inflight_;
            if ((++finished_ & 4095) == 0) __atomic_store_n(progress_, finished_, __ATOMIC_RELAXED);
            moved_on(s);
        } else if (srv.moved) {
            release(s);
        }
    }

    void record_trace(i64 s, i64 sample, i64 job, i64 t, i64 duration) {
        if (trace_used_ >= out_.trace_rows) {
            trace_full_ = true;
            return;
        }
        i64* row = out_.trace + trace_used_ * TRACE_WIDTH;
        row[0] = sample;
        row[1] = job - first_job(sample);
        row[2] = s;
        row[3] = t;
        row[4] = t + duration;
        row[5] = -1;
        servers_[s].trace_row = trace_used_++;
    }

    void start(i64 p) {
        Ring<Queued>& q = queue_[p];
        const i64 sample = q.front().sample, job = q.front().job;
        q.pop_front();
        const i64 s = idle_.next(pool_lo_[p], pool_hi_[p]);
        idle_.clear(s);
        --idle_count_[p];
        const Job& jb = jobs_[job];
        Server& srv = servers_[s];
        srv.serving_done = srv.moved = false;
        srv.free_at = now_ + jb.duration;
        out_.busy[s] += jb.duration;
        if (sample < in_.trace_samples) record_trace(s, sample, job, now_, jb.duration);
        push(now_ + jb.duration, END, sample, job, s);
        if (!jb.last) push(now_ + jb.lead, HANDOFF, sample, job, s);
        Ring<Waiter>& w = waiting_[p];
        if (!w.empty() && room(p)) {
            const Waiter unblocked = w.front();
            w.pop_front();
            enqueue(p, unblocked.sample, unblocked.job);
            moved_on(unblocked.server);
        }
        refresh(p);
    }

    // Admit the next sample if it has arrived, a slot is free and its first queue has room.
    bool admit() {
        const i64 i = next_sample_;
        if (i >= in_.N || in_.arrival[i] > now_ || (in_.in_flight && inflight_ >= in_.in_flight)) return false;
        const i64 first = first_job(i);
        if (jobs_[first].delay == 0 && !room(jobs_[first].pool)) return false;
        ++next_sample_;
        ++inflight_;
        out_.admit[i] = now_;
        hand_to(i, first, -1);
        return true;
    }

    // engine.py's _settle: passes over the pools in index order (each served while its queue
    // and an idle server last), then admissions, until a pass changes nothing.
    void settle() {
        for (;;) {
            bool changed = false;
            for (i64 p = actionable_.next(0, in_.P); p < in_.P; p = actionable_.next(p + 1, in_.P)) {
                while (!queue_[p].empty() && idle_count_[p] > 0) {
                    start(p);
                    changed = true;
                }
            }
            while (admit()) changed = true;
            if (!changed) return;
        }
    }

    void dispatch(const Event& e) {
        const u64 kind = e.key >> 62;
        const i64 sample = i64((e.key >> 31) & u64(MAX_ID)), job = i64(e.key & u64(MAX_ID));
        if (kind == END) end(sample, job, e.server);
        else if (kind == HANDOFF) hand_to(sample, job + 1, e.server);
        else enqueue(jobs_[job].pool, sample, job);
    }

    void setup() {
        jobs_.resize(in_.J);
        for (i64 j = 0; j < in_.J; ++j)
            jobs_[j] = Job{in_.job_delay[j], in_.job_duration[j], in_.job_lead[j], i32(in_.job_pool[j]), false};
        for (i64 c = 1; c <= in_.C; ++c) jobs_[in_.chain_start[c] - 1].last = true;
        servers_.resize(in_.S);
        pool_lo_.assign(in_.P, in_.S);
        pool_hi_.assign(in_.P, 0);
        idle_count_.assign(in_.P, 0);
        for (i64 s = in_.S - 1; s >= 0; --s) {
            const i64 p = in_.pool_servers[s];
            servers_[s].pool = i32(p);
            pool_lo_[p] = s;
            if (pool_hi_[p] == 0) pool_hi_[p] = s + 1;
            ++idle_count_[p];
            idle_.set(s);
        }
    }

public:
    Run(const Inputs& in, const Outputs& out)
        : in_(in), out_(out), queue_(in.P), waiting_(in.P), idle_(in.S), actionable_(in.P) {
        setup();
    }

    Code run(i64* info, i64* stuck) {
        progress_ = info + 2;
        i64 next_arrival = 0;   // the next sample whose arrival (> 0) is still an event
        while (next_arrival < in_.N && in_.arrival[next_arrival] <= 0) ++next_arrival;
        settle();
        while (!heap_.empty() || next_arrival < in_.N) {
            i64 t = heap_.empty() ? in_.arrival[next_arrival] : heap_.top().time;
            if (next_arrival < in_.N && in_.arrival[next_arrival] < t) t = in_.arrival[next_arrival];
            area_ += inflight_ * (t - now_);
            now_ = t;
            while (!heap_.empty() && heap_.top().time == t) dispatch(heap_.pop());
            while (next_arrival < in_.N && in_.arrival[next_arrival] == t) ++next_arrival;
            settle();
        }
        if (trace_full_) return TRACE_FULL;
        info[0] = area_;
        info[1] = now_;
        info[2] = finished_;
        for (i64 p = 0; p < in_.P; ++p) stuck[p] = i64(waiting_[p].size());
        return finished_ == in_.N ? OK : DEADLOCK;
    }
};

}  // namespace

extern "C" int hrn_dataflow_simulate(
    i64 num_servers, const i64* pool_servers, i64 num_pools, const i64* pool_capacity,
    i64 num_classes, const i64* chain_start, i64 num_jobs, const i64* job_pool, const i64* job_delay,
    const i64* job_duration, const i64* job_lead, i64 num_samples, const i64* sample_class,
    const i64* arrival, i64 in_flight, i64 trace_samples, i64* admit, i64* done, i64* busy,
    i64* blocked, i64* max_queue, i64* trace, i64 trace_rows, i64* info, i64* stuck) {
    // info[3] out: inflight_area, the last cycle, finished samples (also published while the run
    // goes, every 4,096 samples, for a progress bar polled from another thread); stuck[P] out: samples
    // blocked at each pool's queue. The problem is assumed valid (Problem.check); the
    // output arrays start zeroed.
    if (num_samples > MAX_ID || num_jobs > MAX_ID || num_servers > MAX_ID) return TOO_LARGE;
    const Inputs in{num_servers, num_pools, num_classes, num_jobs, num_samples, pool_servers,
                    pool_capacity, chain_start, job_pool, job_delay, job_duration, job_lead,
                    sample_class, arrival, in_flight, trace_samples};
    const Outputs out{admit, done, busy, blocked, max_queue, trace, trace_rows};
    try {
        Run run(in, out);
        return run.run(info, stuck);
    } catch (const std::bad_alloc&) {
        return NO_MEMORY;
    } catch (...) {
        return FAILED;
    }
}
