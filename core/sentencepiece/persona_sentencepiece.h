/* The C interface of libpersona_sentencepiece, the one piece of the project that links
 * libsentencepiece. Debian's libsentencepiece carries its own copy of protobuf, and a process that
 * also links libtorch (which uses the system protobuf) crashes at start-up (docs/platform-notes.md). So core
 * never links sentencepiece: it dlopen()s this module with RTLD_LOCAL | RTLD_DEEPBIND, which lets
 * the module and its protobuf resolve their symbols among themselves, and reaches it only through
 * these C functions: no C++ types and no exceptions cross the boundary.
 *
 * Functions that can fail write a NUL-terminated message into `error` (at most error_size bytes,
 * truncated) and return NULL or -1. */
#ifndef PERSONA_SENTENCEPIECE_H
#define PERSONA_SENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature below changes; core refuses a module of another version. */
#define PERSONA_SPM_ABI_VERSION 1

typedef struct persona_spm persona_spm;

int persona_spm_abi_version(void);

/* Loads a SentencePiece model file (tokenizer.model). */
persona_spm* persona_spm_load(const char* path, char* error, size_t error_size);
void persona_spm_free(persona_spm* model);

int persona_spm_vocab_size(const persona_spm* model);
/* The piece as stored ("\xE2\x96\x81world", "<0x0A>"); not NUL-terminated, length in *length.
 * Valid while the model lives. NULL for an id outside the vocabulary. */
const char* persona_spm_piece(const persona_spm* model, int32_t id, size_t* length);
float persona_spm_score(const persona_spm* model, int32_t id);
/* SentencePiece's piece type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
int persona_spm_piece_type(const persona_spm* model, int32_t id);
/* -1 when the model has no such token. */
int32_t persona_spm_bos_id(const persona_spm* model);
int32_t persona_spm_eos_id(const persona_spm* model);
int32_t persona_spm_unk_id(const persona_spm* model);
int32_t persona_spm_pad_id(const persona_spm* model);
/* Whether the normalizer puts a U+2581 in front of the text (normalizer_spec.add_dummy_prefix). */
int persona_spm_add_dummy_prefix(const persona_spm* model);
/* trainer_spec.model_type: 1 unigram, 2 BPE, 3 word, 4 char. */
int persona_spm_model_type(const persona_spm* model);

/* Encodes UTF-8 text to ids (no BOS/EOS). Returns how many ids the text has; only the first
 * `capacity` are written, so a caller whose buffer was too small calls again with a larger one.
 * -1 on failure. Safe to call from several threads at once. */
ptrdiff_t persona_spm_encode(const persona_spm* model, const char* text, size_t length, int32_t* ids,
                             size_t capacity, char* error, size_t error_size);
/* Decodes ids to UTF-8 text as SentencePiece does. Returns the text's length in bytes; only the
 * first `capacity` bytes are written (no NUL). -1 on failure. */
ptrdiff_t persona_spm_decode(const persona_spm* model, const int32_t* ids, size_t count, char* text,
                             size_t capacity, char* error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
