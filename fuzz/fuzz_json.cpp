// fuzz_json — libFuzzer target for JsonObject::parse (common/json.*), the reader of every
// channel message. Run with `make fuzz`.
//
// Any input: parse must return an object or an error message, never crash or read out of
// bounds (ASan, UBSan). An object it accepts must survive a round trip: dump() writes one line
// with no raw newline (the channel frames messages by lines) and parse(dump()) gives it back.
#include "json.hpp"

#include "report.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::string error;
    std::optional<JsonObject> obj = JsonObject::parse(text, &error);
    if (!obj) {
        if (error.empty()) {
            fail("parse failed without saying why\n");
        }
        return 0;
    }
    std::string line = obj->dump();
    if (line.find('\n') != std::string::npos) {
        fail("dump() wrote a raw newline: %s\n", line.c_str());
    }
    std::optional<JsonObject> again = JsonObject::parse(line, &error);
    if (!again || !(*again == *obj)) {
        fail("round trip failed (%s): %s\n", error.c_str(), line.c_str());
    }
    return 0;
}
