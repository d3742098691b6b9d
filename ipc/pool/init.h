// ipc/pool/init.h: how pool workers start. Call ipc::init first thing in main; add ipc::start_fork_server()
// right after it to use StartMethod::kForkServer:
//
//   int main(int argc, char** argv) {
//     ipc::init(argc, argv);        // in an exec'd worker: runs the worker and never returns
//     ipc::start_fork_server();     // before the program starts any thread
//     ...
//     ipc::PoolOptions o;
//     o.start_method = ipc::StartMethod::kForkServer;   // or kExec; kFork is the default
//
// Threads: init and start_fork_server belong at the top of main, before any thread starts (the fork server is a
//   fork of the program at that moment: forked later, it would inherit the locks other threads hold). Afterwards
//   pools of every start method may be made from any thread.
// Processes: the fork server is a daemon child of the process that started it: it dies with it (also when it is
//   SIGKILLed), and its workers die with the server. A forked child of that process has no fork server of its
//   own: it may call start_fork_server() to start one.
// Lifetime: the fork server runs until this process exits (or is killed).
// Errors: start_fork_server throws SystemError when the server cannot be started. init never throws in the
//   program; in an exec'd worker a failure to set up ends the worker (exit status 1, the reason on stderr).
#pragma once

namespace ipc {

// How a Pool starts its workers (PoolOptions::start_method); docs/pool.md says when to use which.
enum class StartMethod {
  // fork() of this process, from the pool's constructor (and later from its supervisor thread): fastest; tasks
  // see a copy of everything (a capturing initializer works), and inherit every lock another thread held.
  kFork,
  // fork() of the fork server started by start_fork_server() at the top of main: safe once the program has
  // threads; workers see the program as it was then (tasks and the initializer are plain functions).
  kForkServer,
  // exec of this program (/proc/self/exe), whose ipc::init runs the worker: a fresh process, nothing inherited;
  // the slowest start. Tasks and the initializer are plain functions of the program or its libraries.
  kExec,
};

// The first line of main. In a worker started by StartMethod::kExec it runs the worker and never returns;
// otherwise it notes that the program can be exec'd as a worker and returns at once. In a program started by
// Process::exec() on a kernel without pidfds it also takes the program's life pipe (ipc/base/process.h).
void init(int argc, char** argv);

// Starts this process's fork server (once; later calls do nothing). Call it before any thread starts.
void start_fork_server();

}  // namespace ipc
