// rolling_reload.hpp — the rolling reload's decisions, sans-IO: which slot is replaced next,
// when its old worker may retire, when the reload is aborted, when it is done, and what a SIGHUP
// during a reload does. lab14 drives it; so can any master with a process table (the cluster
// module). Unit tests: harness/unit/test_rolling_reload.cpp.
//
// Like RoundRobinHandle and RestartWindow it decides and the caller does the I/O: it forks,
// sends, kills and reads no clock. The caller tells it what happened (times are now_ms on any
// monotonic clock) and asks next(now_ms) what to do; it does that, reports back, and asks again
// until the answer is `wait` or `idle`. Workers are named by id (Worker::id), slots 0..N-1.
//
//   SIGHUP       request(ready): begin now (check the new configuration first; then begin()),
//                or queued: one reload is running (or the cluster is not ready yet), and every
//                SIGHUP meanwhile makes one more reload after it — take_queued() says when.
//   begin(generation, worker_of_slot, now): worker_of_slot[s] is the id serving slot s (0: empty).
//   next(now) →
//     start    fork a newcomer for `slot` at `generation`; then started(id), or start_failed()
//     skip     `slot` is on this generation already (slot_done(): a restart during the reload)
//     retire   the newcomer (new_id) listens: tell old_id to go (0: it died meanwhile); ms = how
//              long the newcomer took. Never earlier: N workers accept at every moment.
//     wait     nothing to do until an event (listening, gone) or until `ms` pass (the listen
//              timeout, PM2's listen_timeout; -1: only an event): call next() again then. While
//              a newcomer starts it names the step: slot, old_id, new_id
//     abort    stop here, with `reason` (new-worker-exited, listen-timeout, fork-failed). Slots
//              already replaced keep their new workers, the others their old ones. Kill new_id
//              if it is still alive; restart_slot: the slot's old worker died during the step,
//              so without the newcomer the slot is empty — restart it as after any crash.
//     finished every slot is on this generation; ms = the whole reload
//     idle     no reload is running
//   Events: listening(id, now); gone(id) — a worker exited or announced its own death: says
//   whether it was the newcomer (next() aborts) or the old worker of the slot being replaced
//   (its newcomer replaces it: do not restart it); slot_done(slot, id); cancel() at shutdown.
//   abort and finished both carry `replaced`: how many slots are on this generation.
//
// The kill timeout (PM2's kill_timeout) is not here: a retired worker enforces its own drain
// deadline (lab09's --kill-timeout), so the master has nothing to decide about it.
#pragma once

#include <string>
#include <vector>

struct ReloadAction {
    enum class Kind { idle, wait, start, skip, retire, abort, finished };
    Kind kind = Kind::idle;
    int slot = -1;
    long generation = 0;
    int old_id = 0;       // start, wait, retire: the slot's old worker (0: none); skip: the slot's worker
    int new_id = 0;       // wait, retire, abort: the newcomer (0: none was started)
    long long ms = 0;     // wait: until next() must be asked again; retire: the newcomer's start; finished: the reload
    std::string reason;   // abort
    bool restart_slot = false;  // abort: the slot's old worker died during the step
    int replaced = 0;     // abort, finished: slots on this generation
};

class RollingReload {
public:
    explicit RollingReload(long long listen_timeout_ms);

    enum class Request { begin, queued, queued_again };
    // A SIGHUP. begin: none is running and the cluster is `ready` — check the configuration
    // and begin(). queued: one more reload will follow (log it); queued_again: already so.
    Request request(bool ready);
    // After finished or abort, or once the cluster is ready: true (once) if a reload was queued.
    bool take_queued();

    void begin(long generation, std::vector<int> worker_of_slot, long long now_ms);
    ReloadAction next(long long now_ms);

    void started(int new_id);
    void start_failed();
    void listening(int id, long long now_ms);
    enum class Gone { other, newcomer, old_of_step };
    Gone gone(int id);
    // `slot` needs no step of this reload: a restart put worker `id` of this generation there
    // (0: nobody is to be started there). A slot already reached is left as it is.
    void slot_done(int slot, int id);
    // Shutdown: forget this reload and any queued one. True if one was running.
    bool cancel();

    bool running() const { return running_; }
    long generation() const { return generation_; }
    int newcomer() const { return new_id_; }  // the step's newcomer (0: none now)

private:
    enum class Phase { pick, starting, waiting, listened };
    struct Slot {
        int worker = 0;        // 0: empty
        bool current = false;  // on this generation
    };
    ReloadAction finish(ReloadAction::Kind kind);
    bool ahead(int slot) const;  // not reached yet by this reload's steps
    int replaced() const;

    long long listen_timeout_ms_;
    bool running_ = false;
    bool queued_ = false;
    long generation_ = 0;
    long long started_ms_ = 0;
    std::vector<Slot> slots_;
    size_t next_slot_ = 0;     // the slot being replaced now, or the next one
    Phase phase_ = Phase::pick;
    int old_id_ = 0;           // the step's old worker (0: none, or it died: old_died_)
    bool old_died_ = false;
    int new_id_ = 0;           // the step's newcomer
    long long step_started_ms_ = 0;
    long long listened_ms_ = 0;
    std::string abort_reason_;  // set by an event; next() answers abort
};
