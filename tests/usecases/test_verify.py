"""The verify use case without an engine: the kind of image its labels say it is."""

from __future__ import annotations


def test_an_images_kind_follows_from_its_labels_a_runtime_image_included():
    from factory.usecases.verify import kind_of

    ns = "dev.scitrera"
    assert kind_of({f"{ns}.torch_version": "2.14.0", f"{ns}.flavor": "dev"}, ns) == "base"
    assert kind_of({f"{ns}.torch_version": "2.14.0", f"{ns}.flavor": "runtime"}, ns) == "runtime"
    assert kind_of({f"{ns}.vllm_version": "0.33.0", f"{ns}.flavor": "runtime"}, ns) == "vllm"
    assert kind_of({f"{ns}.vllm_version": "0.33.0", f"{ns}.extra": "nixl"}, ns) == "extra"
