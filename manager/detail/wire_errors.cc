#include "manager/detail/wire_errors.h"

#include <kj/string.h>

#include <exception>
#include <iterator>

#include "manager/errors.h"

namespace ipc::manager::detail {
namespace {

constexpr std::string_view kTags[] = {"[InvalidArgument] ", "[StateError] ", "[Unsupported] ",
                                      "[AuthenticationFailed] ", "[NotFound] "};

}  // namespace

void fail(Tag tag, std::string_view message) {
  auto tag_text = kTags[static_cast<int>(tag)];
  throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                      kj::str(kj::StringPtr(tag_text.data(), tag_text.size()),
                              kj::ArrayPtr<const char>(message.data(), message.size())));
}

void rethrow_current_as_wire() {
  try {
    throw;
  } catch (const InvalidArgument& e) {
    fail(Tag::kInvalidArgument, e.what());
  } catch (const StateError& e) {
    fail(Tag::kStateError, e.what());
  } catch (const Unsupported& e) {
    fail(Tag::kUnsupported, e.what());
  } catch (const NotFound& e) {
    fail(Tag::kNotFound, e.what());
  }
  // Anything else propagated out of the try block unchanged (capnp reports it as a plain failure).
  __builtin_unreachable();
}

void rethrow_as_ipc_error(const kj::Exception& e, std::string_view context) {
  std::string description(e.getDescription().cStr());
  std::string where = std::string(context);
  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
    throw Disconnected(where + ": disconnected from the manager (" + description + ")");
  }
  for (int i = 0; i < static_cast<int>(std::size(kTags)); ++i) {
    auto pos = description.find(kTags[i]);
    if (pos == std::string::npos) continue;
    std::string message = where + ": " + description.substr(pos + kTags[i].size());
    switch (static_cast<Tag>(i)) {
      case Tag::kInvalidArgument: throw InvalidArgument(message);
      case Tag::kStateError: throw StateError(message);
      case Tag::kUnsupported: throw Unsupported(message);
      case Tag::kAuthenticationFailed: throw AuthenticationFailed(message);
      case Tag::kNotFound: throw NotFound(message);
    }
  }
  if (e.getType() == kj::Exception::Type::UNIMPLEMENTED) {
    throw Unsupported(where + ": not implemented by the server (" + description + ")");
  }
  throw RemoteError(where + ": " + description);
}

}  // namespace ipc::manager::detail
