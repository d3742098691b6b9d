#include "ipc/shared/capnp_codec.h"

#include <catch2/catch.hpp>

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ipc/shared/codec_test.capnp.h"

namespace {

using Bytes = std::vector<std::byte>;
using Message = ipc::CapnpMessage<Sample>;

static_assert(ipc::Encodable<Message>);
static_assert(ipc::Encodable<std::vector<Message>>);

void fill(Sample::Builder s, int depth) {
  s.setId(1000 + depth);
  s.setName("sample-" + std::to_string(depth));
  const std::uint8_t payload[] = {1, 2, 3, 0, 255};
  s.setPayload(capnp::Data::Reader(payload, sizeof(payload)));
  auto tags = s.initTags(2);
  tags.set(0, "red");
  tags.set(1, "");
  auto points = s.initPoints(3);
  for (unsigned i = 0; i < points.size(); ++i) {
    points[i].setX(static_cast<int>(i));
    points[i].setY(-static_cast<int>(i));
  }
  if (depth % 2 == 0) {
    s.getShape().setLabel("label");
  } else {
    s.getShape().setCircle(1.5);
  }
  if (depth > 0) fill(s.initChild(), depth - 1);
}

Message make_message(int depth = 2) {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<Sample>(), depth);
  return Message(builder);
}

// Reads every field through the generated accessors; returns a digest so that nothing is optimised away.
std::size_t read_everything(Sample::Reader s) {
  std::size_t digest = s.getId() + s.getName().size() + s.getPayload().size();
  for (capnp::Text::Reader tag : s.getTags()) digest += tag.size();
  for (Point::Reader p : s.getPoints()) digest += static_cast<std::uint32_t>(p.getX()) + static_cast<std::uint32_t>(p.getY());
  switch (s.getShape().which()) {
    case Sample::Shape::NONE:
      break;
    case Sample::Shape::CIRCLE:
      digest += std::bit_cast<std::uint64_t>(s.getShape().getCircle());
      break;
    case Sample::Shape::LABEL:
      digest += s.getShape().getLabel().size();
      break;
  }
  if (s.hasChild()) digest += read_everything(s.getChild());
  return digest;
}

std::string decode_error(std::span<const std::byte> in) {
  try {
    (void)ipc::decode<Message>(in);
  } catch (const ipc::CodecError& e) {
    return e.what();
  }
  FAIL("decode did not throw CodecError");
  return {};
}

}  // namespace

TEST_CASE("a Cap'n Proto message round-trips as its flat array", "[codec][capnp]") {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<Sample>(), 2);
  const kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  const Message message(builder);

  const Bytes encoded = ipc::encode(message);
  REQUIRE(encoded.size() == flat.size() * sizeof(capnp::word));
  CHECK(std::memcmp(encoded.data(), flat.begin(), encoded.size()) == 0);

  const Message decoded = ipc::decode<Message>(encoded);
  const Sample::Reader root = decoded.reader();
  CHECK(root.getId() == 1002);
  CHECK(root.getName() == "sample-2");
  CHECK(root.getShape().getLabel() == "label");
  CHECK(root.getChild().getShape().getCircle() == 1.5);
  CHECK(root.getChild().getChild().getPoints()[2].getY() == -2);
  CHECK(read_everything(root) == read_everything(message.reader()));
}

TEST_CASE("a Cap'n Proto message decodes from an unaligned span", "[codec][capnp]") {
  const Bytes encoded = ipc::encode(make_message());
  Bytes buffer(3);
  buffer.insert(buffer.end(), encoded.begin(), encoded.end());
  const Message decoded = ipc::decode<Message>(std::span(buffer).subspan(3));
  CHECK(decoded.reader().getName() == "sample-2");
}

TEST_CASE("Cap'n Proto messages nest inside other encodable types", "[codec][capnp]") {
  std::vector<Message> messages;
  messages.push_back(make_message(0));
  messages.push_back(make_message(1));
  const std::vector<Message> decoded = ipc::decode<std::vector<Message>>(ipc::encode(messages));
  REQUIRE(decoded.size() == 2);
  CHECK(decoded[0].reader().getName() == "sample-0");
  CHECK(decoded[1].reader().getChild().getName() == "sample-0");
}

TEST_CASE("a moved Cap'n Proto message keeps its reader valid", "[codec][capnp]") {
  Message first = make_message();
  Message second = std::move(first);
  CHECK(second.reader().getName() == "sample-2");
}

TEST_CASE("a Cap'n Proto message that is not whole words is a CodecError", "[codec][capnp]") {
  Bytes encoded = ipc::encode(make_message());
  encoded.pop_back();
  CHECK_THAT(decode_error(encoded), Catch::Contains("is not a positive whole number of 8-byte words"));
  CHECK_THAT(decode_error({}), Catch::Contains("message of 0 bytes"));
}

TEST_CASE("bytes after a Cap'n Proto message are a CodecError", "[codec][capnp]") {
  Bytes encoded = ipc::encode(make_message());
  encoded.resize(encoded.size() + 8);
  CHECK_THAT(decode_error(encoded), Catch::Contains("8 trailing bytes after a Cap'n Proto message"));
}

TEST_CASE("every truncation of a Cap'n Proto message is a CodecError", "[codec][capnp]") {
  const Bytes encoded = ipc::encode(make_message());
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK_THROWS_AS(ipc::decode<Message>(std::span(encoded).first(n)), ipc::CodecError);
  }
}

TEST_CASE("text without its NUL terminator is a CodecError at decode, not later", "[codec][capnp]") {
  Bytes encoded = ipc::encode(make_message(0));
  const std::string needle = std::string("label") + '\0';
  const auto at = std::search(encoded.begin(), encoded.end(), needle.begin(), needle.end(),
                              [](std::byte b, char c) { return b == static_cast<std::byte>(c); });
  REQUIRE(at != encoded.end());
  *(at + 5) = std::byte{'!'};
  CHECK_THAT(decode_error(encoded), Catch::Contains("corrupt Cap'n Proto message"));
}

TEST_CASE("corrupt Cap'n Proto messages are a CodecError or decode to a message whose every field reads",
          "[codec][capnp][fuzz]") {
  const Bytes valid = ipc::encode(make_message());
  std::mt19937_64 rng(0xc0dec0de);
  int decoded = 0;
  int rejected = 0;
  for (int round = 0; round < 4000; ++round) {
    Bytes mutated = valid;
    const int changes = 1 + static_cast<int>(rng() % 3);
    for (int c = 0; c < changes; ++c) {
      // Pointers and the segment table live in whole words; hit the low bytes of a word more often.
      const std::size_t word = rng() % (mutated.size() / 8);
      const std::size_t byte = rng() % 2 == 0 ? rng() % 8 : rng() % 4;
      mutated[word * 8 + byte] = static_cast<std::byte>(rng());
    }
    try {
      const Message message = ipc::decode<Message>(mutated);
      (void)read_everything(message.reader());
      ++decoded;
    } catch (const ipc::CodecError&) {
      ++rejected;
    }
  }
  INFO("decoded " << decoded << ", rejected " << rejected);
  CHECK(decoded > 0);
  CHECK(rejected > 0);
}

TEST_CASE("reading a decoded message many times never hits the traversal limit", "[codec][capnp]") {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<Sample>();
  root.initPoints(100000);  // one word each
  const Message message = ipc::decode<Message>(ipc::encode(Message(builder)));
  std::size_t total = 0;
  for (int i = 0; i < 200; ++i) total += message.reader().getPoints().size();  // 20 Mi words, past the 8 Mi default
  CHECK(total == 200u * 100000u);
}

TEST_CASE("a Cap'n Proto message is named for typed channels by its schema's name and id", "[codec][capnp]") {
  const std::string name = ipc::codec_type_name<Message>();
  CHECK_THAT(name, Catch::Contains("codec_test.capnp:Sample") && Catch::Contains("@0x"));
  CHECK_THAT(ipc::codec_type_name<ipc::CapnpMessage<Point>>(), Catch::Contains("codec_test.capnp:Point"));
}
