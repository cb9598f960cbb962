// Glue between the data pipeline (io/) and the model (engine/): moving loader batches onto the
// model's device, running inference over a whole set, class weights, and the weighted BCE on host
// logits. Shared by train, evaluate and predict.
#pragma once
#include <string>
#include <vector>

#include "engine/comm.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/loader.h"

namespace cxr::app {

// Copies a loader batch (normalised input and labels) into the model's input buffers; rows beyond
// batch.size (a last partial batch) are zero-filled. Inference-mode outputs of padded rows are
// meaningless and ignored; BN in inference mode treats each image independently, so padding changes
// nothing for the real rows.
void upload_batch(DenseNet& net, const io::Batch& batch);

// Logits (n, K) of every image of `split`, in the set's order (ascending dataset index); indices out.
// With a communicator of several ranks the set is sharded (each rank infers its share of every
// global batch of net.batch() x ranks images) and gathered: every rank returns the whole set, each
// image inferred exactly once.
std::vector<float> infer_logits(DenseNet& net, const io::PackedDataset& data, io::Split split,
                                const io::NormParams& norm, std::vector<int64_t>* indices, bool quiet,
                                Comm* comm = nullptr);

// Labels (n, K) as floats for the given dataset indices.
std::vector<float> gather_labels(const io::PackedDataset& data, const std::vector<int64_t>& indices);

// Per-class loss weights from a set's labels: w_pos = frequency of negatives, w_neg = frequency of
// positives (the seed's choice); `plain` gives 1 and 1 (unweighted BCE).
struct ClassWeights {
  std::vector<float> pos, neg;
};
ClassWeights class_weights(const io::PackedDataset& data, io::Split split, bool plain);

// Weighted BCE (Backend::weighted_bce's formula) of host logits, in double.
double weighted_bce_host(const std::vector<float>& logits, const std::vector<float>& labels,
                         const ClassWeights& w, int64_t k);

// Normalisation parameters for a mode; `dataset` measures the training set's pixels (up to
// `max_images`, evenly spaced).
io::NormParams norm_params(const std::string& mode, const io::PackedDataset& data, int64_t max_images = 4096);
io::NormParams norm_params(const io::ModelMeta& meta);

// A model ready for inference from a weight file: its meta data (image size, normalisation, class
// names) taken from the file unless overridden.
struct LoadedModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<DenseNet> net;
  io::ModelMeta meta;
  std::string description;  // what load_weights said
};
LoadedModel load_model(const std::string& weights, const std::string& device, int64_t batch, int64_t size_override,
                       const std::string& normalize_override, const std::string& arch_default = "densenet121",
                       Comm* comm = nullptr);  // a rank of a data-parallel job: its GPU (make_backend_for_rank)

// Is stderr a terminal (progress bars) or a log (a plain line every few seconds)?
bool stderr_is_tty();

// ---- images named on a command line (shared by predict and gradcam) ---------------------------
// Files as given, folders searched recursively for images (.png .jpg .jpeg .bmp .tga .pgm, DICOM:
// .dcm .dicom and extension-less files with the DICM preamble; sorted),
// .txt files as lists (one path a line, '#' comments). The same rules as cxr predict.
std::vector<std::string> expand_image_inputs(const std::vector<std::string>& inputs);
// Decodes `file` to 8-bit grey and resizes it to S x S into dst (S*S bytes) exactly as cxr prepare
// and predict do (Mitchell, prepare's reducing gap); the original size in *width/*height (may be
// null). Returns false and sets *error when the file cannot be decoded. DICOM files are rendered
// with the process-wide io::dicom_options(); Burned In Annotation YES is warned about on stderr.
bool load_grey_square(const std::string& file, int64_t S, uint8_t* dst, std::string* error, int* width = nullptr,
                      int* height = nullptr);

}  // namespace cxr::app
