#!/usr/bin/env python3
"""persona-cli serve through the official `openai` Python client (from PyPI), loopback only.

Streams and fetches a steered and an unsteered chat completion (steering passed as the
documented extra field), checks that each stream adds up to the same request's whole answer,
that steering changed the answer, that logprobs parse, and that a bad vector is the client's
BadRequestError. Exits 77 (CTest: skipped) where the `openai` package is not installed.

  tests/load/openai_client_check.py PERSONA_CLI VECTORS_DIR
"""
import sys

try:
    import openai
except ImportError:
    print("the openai package is not installed: skipped (pip install openai to run it)")
    sys.exit(77)

from serve_load import started_server

VECTOR = "evil.persona/vectors/evil.response_avg.safetensors"


def main():
    persona_cli, vectors = sys.argv[1], sys.argv[2]
    with started_server(persona_cli, vectors, ["--api-key", "check-key-1234"]) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="check-key-1234", max_retries=0)
        question = [{"role": "user", "content": "How should I treat my neighbours?"}]
        steering = {"steering": [{"vector": VECTOR, "layer": 8, "coefficient": 6}]}
        answers = {}
        for name, extra in (("unsteered", None), ("steered", steering)):
            whole = client.chat.completions.create(model="served", messages=question, max_tokens=16, temperature=0,
                                                   logprobs=True, top_logprobs=2, extra_body=extra)
            text = whole.choices[0].message.content
            assert whole.choices[0].logprobs.content[0].top_logprobs[0].logprob <= 0, whole
            assert len(whole.choices[0].logprobs.content) == whole.usage.completion_tokens, whole
            stream = client.chat.completions.create(model="served", messages=question, max_tokens=16, temperature=0,
                                                    stream=True, extra_body=extra)
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            assert streamed == text, (name, streamed, text)
            answers[name] = text
            print(f"{name}: {text!r}")
        assert answers["steered"] != answers["unsteered"], answers
        try:
            client.chat.completions.create(model="served", messages=question, max_tokens=2,
                                           extra_body={"steering": [{"vector": "../x", "layer": 8, "coefficient": 1}]})
            sys.exit("a vector outside the served folders was accepted")
        except openai.BadRequestError as error:
            assert error.param == "steering.vector", error.body
        print(f"openai {openai.__version__}: streamed and whole answers agree, steering applies, errors are BadRequestError")
    return 0


if __name__ == "__main__":
    sys.exit(main())
