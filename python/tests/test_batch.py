"""tiffin.batch: calls of a batchable method merged along batch_dim and split back."""

import unittest

import numpy as np

from tiffin import batch


def double(x):
    return x * 2


class Batching(unittest.TestCase):
    def test_arrays_are_concatenated_along_batch_dim_and_split_back_per_call(self):
        calls = [((np.array([[1, 2]]),), {}), ((np.array([[3, 4], [5, 6]]),), {})]
        seen = []

        def model(x):
            seen.append(x.shape)
            return x * 2

        out = batch.run(model, calls, (0, 0))
        self.assertEqual(seen, [(3, 2)])
        self.assertEqual([o.tolist() for o in out], [[[2, 4]], [[6, 8], [10, 12]]])

    def test_batch_dim_1_concatenates_columns(self):
        calls = [((np.ones((2, 1)),), {}), ((np.zeros((2, 3)),), {})]
        out = batch.run(double, calls, (1, 1))
        self.assertEqual([o.shape for o in out], [(2, 1), (2, 3)])

    def test_lists_are_extended_and_sliced(self):
        calls = [((["a", "b"],), {}), ((["c"],), {})]
        out = batch.run(lambda xs: [x.upper() for x in xs], calls, (0, 0))
        self.assertEqual(out, [["A", "B"], ["C"]])

    def test_a_tuple_answer_is_split_element_by_element(self):
        calls = [((np.array([1]),), {}), ((np.array([2, 3]),), {})]
        out = batch.run(lambda x: (x, -x), calls, (0, 0))
        self.assertEqual([(a.tolist(), b.tolist()) for a, b in out], [([1], [-1]), ([2, 3], [-2, -3])])

    def test_an_answer_with_the_wrong_number_of_rows_fails_the_batch(self):
        calls = [((np.array([1]),), {}), ((np.array([2]),), {})]
        with self.assertRaisesRegex(ValueError, "1 rows for 2 inputs"):
            batch.run(lambda x: x[:1], calls, (0, 0))

    def test_keyword_calls_and_single_calls_run_one_by_one(self):
        seen = []

        def model(x, scale=1):
            seen.append(x.tolist())
            return x * scale

        out = batch.run(model, [((np.array([1]),), {"scale": 3}), ((np.array([2]),), {})], (0, 0))
        self.assertEqual([o.tolist() for o in out], [[3], [2]])
        self.assertEqual(seen, [[1], [2]])

    def test_scalars_cannot_be_batched_and_say_why(self):
        with self.assertRaisesRegex(TypeError, "cannot batch a int"):
            batch.run(double, [((1,), {}), ((2,), {})], (0, 0))


if __name__ == "__main__":
    unittest.main()
