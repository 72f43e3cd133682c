// capacity_grid.h: a grid of capacity cells gathered into one results.json with the fit of
// capacity against parameters (the paper's bits per parameter), and the offline HTML report
// (capacity_html.c). The cells themselves are run by cli/cmd_capacity.c.
#ifndef G3_CAPACITY_GRID_H
#define G3_CAPACITY_GRID_H

#include <stdint.h>
#include <stdio.h>

#include "../base/json.h"

// The paper's headline figure (Morris et al. 2025): bits a parameter; sets the grid's dataset
// sizes (--multiples) around each model's expected capacity.
#define G3_CAP_BITS_PER_PARAM 3.6

typedef struct {
    int layers, width, bf16;
    int64_t params;
    double capacity;       // the plateau: the most total memorized bits over the model's converged cells
    int ncells, nconverged;
    double bits_per_param; // capacity / params
    double bits_per_sequence;
    double predicted_peak_n;  // capacity / bits a sequence: where the double descent should peak
    int64_t observed_peak_n;  // N of the highest held-out loss among the model's cells
    // The cell that gave the capacity memorized (nearly) all of its data (>= 99% of its bits):
    // it was limited by its dataset, not by the model, so the capacity is only a lower bound
    // (no plateau seen) and the model stays out of the fit.
    int data_limited;
} G3CapModel;

typedef struct {
    G3CapModel *m;
    int nm;
    int nfit;                      // models in the fit (a converged cell that was not data-limited)
    double slope0;                 // least squares through the origin: capacity = slope0 * params
    double slope, intercept;       // ordinary least squares (>= 2 models)
} G3CapSummary;

// Summary of the cells array of a parsed results document (the grid's or one cell's).
int g3_cap_summarize(const JsonNode *cells, G3CapSummary *sum);
void g3_cap_summary_free(G3CapSummary *sum);
void g3_cap_summary_json(FILE *f, const G3CapSummary *sum);

// Reads DIR/results.json of each of the n cell folders, writes out/results.json
// ({"cells": [...], "summary": {...}}) atomically, and out/report.html when html is set.
int g3_cap_grid_collect(const char *out, const char *const *dirs, int n, int html);

// The report: results_json is the grid's results.json text, embedded as is.
int g3_cap_html_write(const char *path, const char *results_json, size_t len);

#endif
