import Foundation
import LoadstarProtocol
import Testing

@Suite struct SecretRedactorTests {
    let redactor = SecretRedactor(secrets: ["OPENAI_KEY": "sk-test-abcdef123456", "PASS": "hunter2/\"x\"", "PIN": "123"])

    @Test func rawValueAnywhere() {
        #expect(redactor.redact("Authorization: Bearer sk-test-abcdef123456 was rejected")
            == "Authorization: Bearer [secret OPENAI_KEY] was rejected")
        #expect(redactor.redact("sk-test-abcdef123456sk-test-abcdef123456") == "[secret OPENAI_KEY][secret OPENAI_KEY]")
        #expect(redactor.redact("no secret here") == "no secret here")
        #expect(redactor.redact("") == "")
    }

    @Test func shortValuesAreIgnored() {
        #expect(redactor.redact("error 123 at line 1234") == "error 123 at line 1234")
        #expect(SecretRedactor(secrets: ["A": "abc", "B": ""]).isEmpty)
        #expect(SecretRedactor.none.redact("anything") == "anything")
    }

    @Test func jsonEscapedForm() throws {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: ["echo": "pw=hunter2/\"x\""]), as: UTF8.self)
        #expect(!redactor.redact(json).contains("hunter2"))
        #expect(redactor.redact(#"{"auth":"hunter2\/\"x\""}"#) == #"{"auth":"[secret PASS]"}"#)
        #expect(redactor.redact(#"{"auth":"hunter2/\"x\""}"#) == #"{"auth":"[secret PASS]"}"#)
    }

    @Test func percentEncodedForm() {
        #expect(redactor.redact("GET /?p=hunter2%2F%22x%22 HTTP/1.1") == "GET /?p=[secret PASS] HTTP/1.1")
        #expect(redactor.redact("p=hunter2%2f%22x%22") == "p=[secret PASS]")
    }

    @Test func basicAuthBase64() {
        let key = "sk-test-abcdef123456"
        for user in ["", "u", "us", "user", "someone@example.com"] {
            let header = "Basic " + Data("\(user):\(key)".utf8).base64EncodedString()
            let redacted = redactor.redact("you sent Authorization: \(header)")
            #expect(redacted.contains("[secret OPENAI_KEY]"), "user '\(user)': \(redacted)")
            // What is left of the base64 cannot be decoded back to the key.
            #expect(!redacted.contains(Data(key.utf8).base64EncodedString().dropLast(4)))
        }
        // The secret on its own, base64-encoded.
        #expect(redactor.redact(Data("sk-test-abcdef123456".utf8).base64EncodedString()).contains("[secret OPENAI_KEY]"))
    }

    @Test func longestFirstAndNoRescan() {
        let r = SecretRedactor(secrets: ["SHORT": "secret", "LONG": "secret-and-more"])
        #expect(r.redact("x secret-and-more y secret z") == "x [secret LONG] y [secret SHORT] z")
        // A replacement that contains another secret's value is not rescanned.
        let nested = SecretRedactor(secrets: ["A": "TOKEN-A-VALUE", "B": "secret A"])
        #expect(nested.redact("TOKEN-A-VALUE") == "[secret A]")
    }

    @Test func nonASCIITextSurvives() {
        let r = SecretRedactor(secrets: ["K": "clé-secrète"])
        #expect(r.redact("« clé-secrète » refusée ✓") == "« [secret K] » refusée ✓")
        #expect(r.redact("héhé ✓") == "héhé ✓")
    }
}
