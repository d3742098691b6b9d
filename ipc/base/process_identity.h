// ipc/base/process_identity.h: how a process that was not started by Process::start() takes the identity a
// pool gave it (internal, for ipc/pool): an exec'd worker learns its name and parent from its arguments, and a
// fork-server worker has the program, not the server, as its parent; and how an exec'd program takes its life
// pipe (kernels without pidfds).
//
// Threads/Processes: call at the start of the process, before it starts a thread or reads its own identity.
// Errors: none.
#pragma once

#include <string>

#include "ipc/base/process.h"

namespace ipc::detail {

// current_process().name from now on.
void set_process_name(std::string name);
// parent_process() from now on.
void set_parent_process(ParentProcess parent);
// In a program started by Process::exec() on a kernel without pidfds: takes the write end of its life pipe, named
// in the environment (IPC_PROCESS_LIFE_FD, then removed), so that the children it forks (through Process or not)
// and the programs it execs do not hold it, and its end is seen as it ends. Does nothing elsewhere.
void adopt_life_pipe();

}  // namespace ipc::detail
