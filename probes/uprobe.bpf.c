// SPDX-License-Identifier: GPL-2.0
/* Function-call spans for otel-run.
 *
 * Every probed function of a native program gets this uprobe and uretprobe,
 * each attached with a cookie naming the function; a Go function gets
 * `go_enter` on its entry and `go_return` on each of its `ret` instructions
 * (see below). Only processes in `traced` are observed: the
 * child otel-run spawns (caught when otel-run forks it, before it execs) and
 * every process it forks in turn. Each call becomes one ring-buffer record at
 * return, with its own span id and its parent's, so user space builds spans
 * without reassembling entry/return pairs. */
#include <linux/bpf.h>
#if defined(__TARGET_ARCH_x86)
#include <asm/ptrace.h>
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "event.h"

/* Just the fields needed of the kernel's task_struct; CO-RE relocates them
 * against the running kernel's BTF. */
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "GPL";

/* Ring buffer of finished calls. Its size is set by otel-run at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} calls SEC(".maps");

/* tgid -> 1 for every process whose calls become spans. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} traced SEC(".maps");

/* [0] = otel-run's own tgid while it spawns the child: what it forks is traced. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} launcher SEC(".maps");

/* Calls that could not be recorded, per reason (OTEL_RUN_LOST_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OTEL_RUN_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct frame {
	__u64 start_ns;
	__u64 span_id;
};

/* The probed calls in progress on one thread. */
struct frames {
	__u32 depth;
	__u32 _pad;
	__u64 root_span_id;
	struct frame frame[OTEL_RUN_MAX_DEPTH];
};

/* Each thread's calls in progress, stored with the thread itself: found
 * without hashing, and freed by the kernel when the thread ends. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct frames);
} stacks SEC(".maps");

/* Bytes of unread records above which a record wakes the reader; below, the
 * reader's timer picks them up, so a busy function costs no wakeup per call.
 * Set by otel-run at load time (a quarter of the ring buffer by default). */
volatile const __u64 wakeup_bytes = 1 << 20;

static __always_inline void count_lost_n(__u32 slot, __u64 count)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		*n += count;
}

static __always_inline void count_lost(__u32 slot)
{
	count_lost_n(slot, 1);
}

static __always_inline int is_traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced, &tgid) != 0;
}

/* Random high half, the entry time's low half: unique among a run's calls
 * for one random number per call. */
static __always_inline __u64 new_span_id(__u64 now)
{
	__u64 id = ((__u64)bpf_get_prandom_u32() << 32) | (__u32)now;
	return id ? id : 1;
}

/* A thread has `stacks` storage only if its process is traced, so a probed
 * call of a traced thread costs one storage lookup on entry and one on return;
 * the `traced` set is consulted only for a thread's first call. */
SEC("uprobe")
int call_enter(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct frames *f = bpf_task_storage_get(&stacks, task, 0, 0);
	if (!f) {
		if (!is_traced(bpf_get_current_pid_tgid() >> 32))
			return 0;
		f = bpf_task_storage_get(&stacks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!f)
			return 0;
	}
	/* 64-bit, so the bounds check below holds for the index the compiler uses. */
	__u64 depth = f->depth;
	f->depth = depth + 1;
	if (depth >= OTEL_RUN_MAX_DEPTH) {
		count_lost(OTEL_RUN_LOST_DEPTH);
		return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 span_id = new_span_id(now);
	if (depth == 0)
		f->root_span_id = span_id;
	f->frame[depth].span_id = span_id;
	f->frame[depth].start_ns = now;
	return 0;
}

SEC("uretprobe")
int call_return(struct pt_regs *ctx)
{
	__u64 end_ns = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct frames *f = bpf_task_storage_get(&stacks, bpf_get_current_task_btf(), 0, 0);
	if (!f || f->depth == 0)
		return 0;
	__u64 depth = f->depth - 1;
	f->depth = depth;
	if (depth >= OTEL_RUN_MAX_DEPTH)
		return 0;
	struct otel_run_call *call = bpf_ringbuf_reserve(&calls, sizeof(*call), 0);
	if (!call) {
		count_lost(OTEL_RUN_LOST_RINGBUF);
		return 0;
	}
	call->start_ns = f->frame[depth].start_ns;
	call->end_ns = end_ns;
	call->span_id = f->frame[depth].span_id;
	call->parent_span_id = depth > 0 ? f->frame[depth - 1].span_id : 0;
	call->root_span_id = f->root_span_id;
	call->cookie = bpf_get_attach_cookie(ctx);
	call->pid = tgid;
	call->tid = tid;
	call->depth = depth;
	call->_pad = 0;
	__u64 unread = bpf_ringbuf_query(&calls, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(call, unread >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

/* Go programs.
 *
 * The Go runtime moves a goroutine's stack when it grows it, and walks stacks
 * for the garbage collector and for panics: a uretprobe's rewritten return
 * address would crash the program. So a Go function has a plain uprobe on its
 * entry and one on each `ret` instruction (found by otel-run by disassembling
 * it), and goroutines move between threads, so calls in progress are kept per
 * goroutine: with Go's register ABI (Go 1.17 and later, amd64) R14 holds the
 * running goroutine's `g`.
 *
 * A frame's place is `g.stack.hi - sp` at entry: where it is below the top of
 * its goroutine's stack, which stays the same when the runtime copies the
 * stack elsewhere. At a `ret`, sp is back where it was at entry, so the place
 * finds the call's frame; frames deeper than it were unwound by a panic
 * without reaching their `ret`, and so are frames at or below the place of a
 * new call. Those are dropped and counted (OTEL_RUN_LOST_UNWOUND); calls that
 * return are never affected. A goroutine's entry is deleted when its last
 * probed call returns, so `goroutines` holds only goroutines with probed
 * calls in progress; those of a process are deleted when it exits. Only on
 * amd64 for now: otel-run refuses Go programs elsewhere. */
#if defined(__TARGET_ARCH_x86)

struct go_frame {
	__u64 start_ns;
	__u64 span_id;
	__u64 place;  /* g.stack.hi - sp at entry */
	__u64 cookie; /* which function */
};

struct go_frames {
	__u32 depth;
	__u32 _pad;
	__u64 root_span_id;
	struct go_frame frame[OTEL_RUN_MAX_DEPTH];
};

struct go_key {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

/* Preallocated: an insert on a hot path allocates nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, struct go_frames);
} goroutines SEC(".maps");

/* An empty `go_frames` to insert from: too large for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_frames);
} go_empty SEC(".maps");

/* Offset of `stack.hi` in the runtime's `g` (`stack` is its first field,
 * `{lo, hi uintptr}`, unchanged since Go 1.0). */
#define GO_G_STACK_HI 8

/* The running goroutine and the place of the stack pointer in its stack;
 * 0 when R14 does not point at a readable `g`. */
static __always_inline int go_where(struct pt_regs *ctx, struct go_key *key, __u64 *place)
{
	__u64 hi = 0;
	key->g = ctx->r14;
	key->tgid = bpf_get_current_pid_tgid() >> 32;
	key->_pad = 0;
	if (!key->g || bpf_probe_read_user(&hi, sizeof(hi), (void *)(key->g + GO_G_STACK_HI)))
		return 0;
	if (hi < ctx->rsp)
		return 0;
	*place = hi - ctx->rsp;
	return 1;
}

SEC("uprobe")
int go_enter(struct pt_regs *ctx)
{
	struct go_key key;
	__u64 place;
	if (!is_traced(bpf_get_current_pid_tgid() >> 32) || !go_where(ctx, &key, &place))
		return 0;
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct go_frames *f = bpf_map_lookup_elem(&goroutines, &key);
	if (!f) {
		__u32 zero = 0;
		struct go_frames *empty = bpf_map_lookup_elem(&go_empty, &zero);
		if (!empty)
			return 0;
		if (bpf_map_update_elem(&goroutines, &key, empty, BPF_NOEXIST)) {
			count_lost(OTEL_RUN_LOST_GOROUTINES);
			return 0;
		}
		f = bpf_map_lookup_elem(&goroutines, &key);
		if (!f)
			return 0;
	}
	for (int i = 0; i < OTEL_RUN_MAX_DEPTH; i++) {
		__u64 depth = f->depth;
		if (depth == 0 || depth > OTEL_RUN_MAX_DEPTH)
			break;
		struct go_frame *top = &f->frame[depth - 1];
		if (top->place < place)
			break;
		/* The same call again at the same place: the function's prologue
		 * grew the stack and restarted it. The call began at the first entry. */
		if (top->place == place && top->cookie == cookie)
			return 0;
		f->depth = depth - 1;
		count_lost(OTEL_RUN_LOST_UNWOUND);
	}
	__u64 depth = f->depth;
	if (depth >= OTEL_RUN_MAX_DEPTH) {
		count_lost(OTEL_RUN_LOST_DEPTH);
		return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 span_id = new_span_id(now);
	if (depth == 0)
		f->root_span_id = span_id;
	f->frame[depth].start_ns = now;
	f->frame[depth].span_id = span_id;
	f->frame[depth].place = place;
	f->frame[depth].cookie = cookie;
	f->depth = depth + 1;
	return 0;
}

SEC("uprobe")
int go_return(struct pt_regs *ctx)
{
	__u64 end_ns = bpf_ktime_get_ns();
	struct go_key key;
	__u64 place;
	if (!go_where(ctx, &key, &place))
		return 0;
	struct go_frames *f = bpf_map_lookup_elem(&goroutines, &key);
	if (!f)
		return 0;
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct go_frame *top = 0;
	__u64 depth = 0;
	for (int i = 0; i < OTEL_RUN_MAX_DEPTH; i++) {
		depth = f->depth;
		if (depth == 0 || depth > OTEL_RUN_MAX_DEPTH)
			break;
		top = &f->frame[depth - 1];
		if (top->place <= place)
			break;
		f->depth = depth - 1;
		count_lost(OTEL_RUN_LOST_UNWOUND);
		top = 0;
	}
	/* No frame here: the call began before the probes, or too deep. */
	if (!top || top->place != place || top->cookie != cookie)
		goto done;
	depth -= 1;
	f->depth = depth;
	struct otel_run_call *call = bpf_ringbuf_reserve(&calls, sizeof(*call), 0);
	if (!call) {
		count_lost(OTEL_RUN_LOST_RINGBUF);
		goto done;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	call->start_ns = top->start_ns;
	call->end_ns = end_ns;
	call->span_id = top->span_id;
	call->parent_span_id = depth > 0 && depth < OTEL_RUN_MAX_DEPTH ? f->frame[depth - 1].span_id : 0;
	call->root_span_id = f->root_span_id;
	call->cookie = cookie;
	call->pid = pid_tgid >> 32;
	call->tid = (__u32)pid_tgid;
	call->depth = depth;
	call->_pad = 0;
	__u64 unread = bpf_ringbuf_query(&calls, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(call, unread >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
done:
	if (f->depth == 0)
		bpf_map_delete_elem(&goroutines, &key);
	return 0;
}

/* Deletes one exited process's goroutines (`for_each` callback). */
static long forget_goroutine(void *map, struct go_key *key, struct go_frames *f, __u32 *tgid)
{
	if (key->tgid == *tgid) {
		count_lost_n(OTEL_RUN_LOST_UNWOUND, f->depth);
		bpf_map_delete_elem(map, key);
	}
	return 0;
}
#endif

/* A traced process's children are traced, and so is the child otel-run spawns. */
SEC("raw_tracepoint/sched_process_fork")
int follow_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_pid != child_tgid)
		return 0; /* a new thread of the same process */
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	__u32 *launcher_tgid = bpf_map_lookup_elem(&launcher, &zero);
	if (is_traced(parent) || (launcher_tgid && *launcher_tgid && *launcher_tgid == parent)) {
		__u8 one = 1;
		bpf_map_update_elem(&traced, &child_tgid, &one, BPF_ANY);
	}
	return 0;
}

/* A new program starts with no calls in progress. */
SEC("raw_tracepoint/sched_process_exec")
int forget_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct frames *f = bpf_task_storage_get(&stacks, bpf_get_current_task_btf(), 0, 0);
	if (f)
		f->depth = 0;
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int forget_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	if (tid == tgid && bpf_map_delete_elem(&traced, &tgid) == 0) {
#if defined(__TARGET_ARCH_x86)
		bpf_for_each_map_elem(&goroutines, forget_goroutine, &tgid, 0);
#endif
	}
	return 0;
}
