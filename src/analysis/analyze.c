// analyze.c: the metrics of analyze.h on plain arrays. All sums run in double: a pattern row
// of a few thousand small probabilities loses digits in float, and the tests hold these to
// values computed independently from the float64 reference patterns.
#include "analyze.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

double g3_an_entropy(const float *p, int n) {
    double h = 0;
    for (int k = 0; k < n; k++)
        if (p[k] > 0) h -= (double)p[k] * log((double)p[k]);
    return h;
}

double g3_an_distance(const float *p, int q) {
    double d = 0;
    for (int k = 0; k < q; k++) d += (double)p[k] * (q - k);
    return d;
}

int g3_an_bucket(int d) {
    if (d <= 0) return 0;
    int b = 1;
    while (d > 1 && b < G3_AN_NBUCKET - 1) { d >>= 1; b++; }
    return b;
}

// KL terms of JS against the midpoint; both halves share one pass.
double g3_an_js(const float *p, const float *r, int n) {
    double js = 0;
    for (int k = 0; k < n; k++) {
        double a = p[k], b = r[k], m = 0.5 * (a + b);
        if (a > 0) js += 0.5 * a * log(a / m);
        if (b > 0) js += 0.5 * b * log(b / m);
    }
    return js > 0 ? js : 0;  // rounding can leave -1e-17 for identical rows
}

void g3_an_head(G3AnHead *out, const float *pat, int T) {
    memset(out, 0, sizeof *out);
    out->induction = NAN;
    if (T < 2) return;
    for (int q = 1; q < T; q++) {
        const float *row = pat + (long)q * T;
        out->entropy += g3_an_entropy(row, q + 1);
        out->distance += g3_an_distance(row, q);
        out->bos += row[0];
        out->prev += row[q - 1];
        for (int k = 0; k <= q; k++) out->hist[g3_an_bucket(q - k)] += row[k];
    }
    const double nq = T - 1;
    out->entropy /= nq;
    out->distance /= nq;
    out->bos /= nq;
    out->prev /= nq;
    for (int b = 0; b < G3_AN_NBUCKET; b++) out->hist[b] /= nq;
}

double g3_an_induction(const float *pat, int n) {
    const int T = 2 * n + 1;
    if (n < 1) return NAN;
    double s = 0;
    for (int i = 1; i <= n; i++) s += pat[(long)(n + i) * T + (i + 1)];
    return s / n;
}

double g3_an_js_heads(const float *pa, const float *pb, int T) {
    if (T < 2) return 0;
    double s = 0;
    for (int q = 1; q < T; q++) s += g3_an_js(pa + (long)q * T, pb + (long)q * T, q + 1);
    return s / (T - 1);
}

double g3_an_mean_norm(const float *x, int rows, int cols) {
    if (rows < 1) return 0;
    double sum = 0;
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < cols; i++) s += (double)x[(long)r * cols + i] * x[(long)r * cols + i];
        sum += sqrt(s);
    }
    return sum / rows;
}

double g3_an_sparsity(const float *x, long n, double rel) {
    if (n < 1) return 0;
    double ss = 0;
    for (long i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double thr = rel * sqrt(ss / n);
    if (thr == 0) return 0;
    long below = 0;
    for (long i = 0; i < n; i++) below += fabs((double)x[i]) < thr;
    return (double)below / n;
}

// Householder reduction of the symmetric a [n][n] to tridiagonal form: diagonal d, the
// subdiagonal in e[1..n-1] (values only, no vectors; after Numerical Recipes' tred2).
static void tridiagonalize(double *a, int n, double *d, double *e) {
#define A(i, j) a[(long)(i) * n + (j)]
    for (int i = n - 1; i > 0; i--) {
        int l = i - 1;
        double h = 0, scale = 0;
        if (l > 0) {
            for (int k = 0; k <= l; k++) scale += fabs(A(i, k));
            if (scale == 0) {
                e[i] = A(i, l);
            } else {
                for (int k = 0; k <= l; k++) { A(i, k) /= scale; h += A(i, k) * A(i, k); }
                double f = A(i, l), g = f >= 0 ? -sqrt(h) : sqrt(h);
                e[i] = scale * g;
                h -= f * g;
                A(i, l) = f - g;
                f = 0;
                for (int j = 0; j <= l; j++) {
                    g = 0;
                    for (int k = 0; k <= j; k++) g += A(j, k) * A(i, k);
                    for (int k = j + 1; k <= l; k++) g += A(k, j) * A(i, k);
                    e[j] = g / h;
                    f += e[j] * A(i, j);
                }
                double hh = f / (h + h);
                for (int j = 0; j <= l; j++) {
                    f = A(i, j);
                    e[j] = g = e[j] - hh * f;
                    for (int k = 0; k <= j; k++) A(j, k) -= f * e[k] + g * A(i, k);
                }
            }
        } else {
            e[i] = A(i, l);
        }
    }
    e[0] = 0;
    for (int i = 0; i < n; i++) d[i] = A(i, i);
#undef A
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int g3_an_sym_eigvals(double *d, double *a, int n) {
    if (n < 1) return 0;
    for (long i = 0; i < (long)n * n; i++)  // the iteration would spin on NaN until its limit
        if (!isfinite(a[i])) return g3_errorf("eigenvalues: the matrix holds NaN or inf at row %ld, column %ld", i / n, i % n);
    double *e = g3_malloc((size_t)n * sizeof *e);
    if (!e) return -1;
    tridiagonalize(a, n, d, e);
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0;
    // implicit QL with Wilkinson-style shifts (Numerical Recipes' tqli, values only)
    for (int l = 0; l < n; l++) {
        int iter = 0, m;
        do {
            for (m = l; m < n - 1; m++) {
                double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= DBL_EPSILON * dd) break;
            }
            if (m != l) {
                if (iter++ == 100) { free(e); return g3_errorf("eigenvalues: QL iteration did not converge"); }
                double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
                double r = hypot(g, 1.0);
                g = d[m] - d[l] + e[l] / (g + copysign(r, g));
                double s = 1, c = 1, p = 0;
                int i;
                for (i = m - 1; i >= l; i--) {
                    double f = s * e[i], b = c * e[i];
                    e[i + 1] = r = hypot(f, g);
                    if (r == 0) { d[i + 1] -= p; e[m] = 0; break; }
                    s = f / r;
                    c = g / r;
                    g = d[i + 1] - p;
                    r = (d[i] - g) * s + 2.0 * c * b;
                    d[i + 1] = g + (p = s * r);
                    g = c * r - b;
                }
                if (r == 0 && i >= l) continue;
                d[l] -= p;
                e[l] = g;
                e[m] = 0;
            }
        } while (m != l);
    }
    free(e);
    qsort(d, (size_t)n, sizeof *d, cmp_double);
    return 0;
}

double g3_an_effective_rank(const float *x, int rows, int cols) {
    if (rows < 1 || cols < 1) return 0;
    // the Gram matrix of the smaller side has the same nonzero eigenvalues (sigma^2)
    const int byrow = rows <= cols, n = byrow ? rows : cols, len = byrow ? cols : rows;
    double *g = g3_malloc((size_t)n * n * sizeof *g), *ev = g3_malloc((size_t)n * sizeof *ev);
    double r = -1;
    if (!g || !ev) goto out;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int k = 0; k < len; k++) {
                double a = byrow ? x[(long)i * cols + k] : x[(long)k * cols + i];
                double b = byrow ? x[(long)j * cols + k] : x[(long)k * cols + j];
                s += a * b;
            }
            g[(long)i * n + j] = g[(long)j * n + i] = s;
        }
    if (g3_an_sym_eigvals(ev, g, n)) goto out;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += ev[i] = sqrt(ev[i] > 0 ? ev[i] : 0);
    if (sum == 0) { r = 0; goto out; }
    double h = 0;
    for (int i = 0; i < n; i++)
        if (ev[i] > 0) h -= ev[i] / sum * log(ev[i] / sum);
    r = exp(h);
out:
    free(g);
    free(ev);
    return r;
}
