"""The BentoML surface: descriptors decode and refuse, metrics check labels, unknown names fail naming themselves."""

import io
import unittest

import numpy as np

import tiffin as bentoml
from tiffin._errors import BadInput, Unsupported
from tiffin.io import JSON, File, Image, Multipart, NumpyNdarray, Text


class Descriptors(unittest.TestCase):
    def test_text_decodes_utf8_and_refuses_other_bytes(self):
        self.assertEqual(Text().from_http("héllo".encode(), "text/plain"), "héllo")
        with self.assertRaisesRegex(BadInput, "not UTF-8"):
            Text().from_http(b"\xff\xfe", "text/plain")

    def test_json_with_a_pydantic_model_names_the_field_at_fault(self):
        import pydantic

        class Point(pydantic.BaseModel):
            x: int
            y: int

        d = JSON(pydantic_model=Point)
        self.assertEqual(d.from_http(b'{"x":1,"y":2}', "application/json"), Point(x=1, y=2))
        with self.assertRaisesRegex(BadInput, "y"):
            d.from_http(b'{"x":1}', "application/json")
        self.assertEqual(d.to_http(Point(x=1, y=2)), b'{"x":1,"y":2}')
        self.assertTrue(d.spec()["bentoml"]["args"]["has_pydantic_model"])

    def test_ndarray_checks_an_enforced_shape_naming_both(self):
        d = NumpyNdarray(dtype="float32", shape=(-1, 2), enforce_shape=True)
        self.assertEqual(d.from_http(b"[[1,2],[3,4]]", None).dtype, np.float32)
        with self.assertRaisesRegex(BadInput, r"\(-1, 2\).*\(1, 3\)"):
            d.from_http(b"[[1,2,3]]", None)
        self.assertEqual(d.spec()["bentoml"]["args"]["shape"], [-1, 2])

    def test_ndarray_takes_the_declared_shape_when_it_can_as_bentoml_does(self):
        d = NumpyNdarray(dtype="float32", shape=(-1, 3))
        self.assertEqual(d.from_http(b"[1,2,3]", None).shape, (1, 3))
        self.assertEqual(d.from_http(b"[1,2]", None).shape, (2,))

    def test_json_refuses_nan_as_bentomls_encoder_does(self):
        with self.assertRaisesRegex(ValueError, "not JSON compliant"):
            JSON().to_http({"ratio": float("nan")})

    def test_image_and_file_take_a_raw_body_or_a_form_upload(self):
        from PIL import Image as PILImage

        png = io.BytesIO()
        PILImage.new("RGB", (3, 2)).save(png, format="PNG")
        body = png.getvalue()
        form = (
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + body + b"\r\n--b--\r\n"
        )
        for data, ctype in ((body, "image/png"), (form, "multipart/form-data; boundary=b")):
            self.assertEqual(Image().from_http(data, ctype).size, (3, 2))
            self.assertEqual(File().from_http(data, ctype).read(), body)
        with self.assertRaisesRegex(BadInput, "not an image"):
            Image().from_http(b"not a png", "image/png")

    def test_multipart_names_the_missing_parts(self):
        d = Multipart(a=Text(), b=JSON())
        form = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhi\r\n--b--\r\n"
        with self.assertRaisesRegex(BadInput, r"\['b'\]"):
            d.from_http(form, "multipart/form-data; boundary=b")


class Metrics(unittest.TestCase):
    def test_labels_by_name_or_position_and_wrong_labels_are_refused(self):
        c = bentoml.metrics.Counter(name="unit_polarity", documentation="d", labelnames=["polarity"])
        c.labels(polarity="True").inc()
        c.labels("False").inc(2)
        with self.assertRaisesRegex(ValueError, "wrong label names"):
            c.labels(kind="x")
        with self.assertRaisesRegex(ValueError, "label values"):
            c.labels("a", "b")
        with self.assertRaisesRegex(ValueError, "non-negative"):
            c.labels("x").inc(-1)

    def test_a_family_without_labels_records_directly(self):
        h = bentoml.metrics.Histogram(name="unit_seconds", documentation="d", buckets=(0.1, 1.0, float("inf")))
        h.observe(0.5)
        g = bentoml.metrics.Gauge(name="unit_gauge", documentation="d")
        g.set(3)
        g.dec()
        with self.assertRaisesRegex(TypeError, "unsupported arguments: bogus"):
            bentoml.metrics.Summary(name="unit_s", documentation="d", bogus=1)


class Exceptions(unittest.TestCase):
    def test_bentomls_exceptions_answer_with_their_status(self):
        from tiffin._errors import status_of
        from tiffin.exceptions import BadInput as BentoBadInput, NotFound

        self.assertEqual(status_of(NotFound("no such thing")), (404, "no such thing"))
        self.assertEqual(status_of(BentoBadInput("bad")), (400, "bad"))
        self.assertEqual(status_of(ValueError("x")), (500, "ValueError: x"))


class Unknown(unittest.TestCase):
    def test_a_name_tiffin_lacks_fails_naming_it(self):
        with self.assertRaisesRegex(Unsupported, "bentoml.models is not supported by tiffin"):
            bentoml.models
        with self.assertRaisesRegex(Unsupported, "bentoml.io.PandasDataFrame"):
            from tiffin.io import PandasDataFrame  # noqa: F401

    def test_a_runner_needs_a_runnable_with_methods(self):
        class Empty(bentoml.Runnable):
            pass

        with self.assertRaisesRegex(ValueError, "no method marked"):
            bentoml.Runner(Empty)
        with self.assertRaisesRegex(ValueError, "max_batch_size"):

            class One(bentoml.Runnable):
                @bentoml.Runnable.method
                def f(self, x):
                    return x

            bentoml.Runner(One, max_batch_size=0)


if __name__ == "__main__":
    unittest.main()
