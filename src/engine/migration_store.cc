#include "engine/migration_store.h"

namespace tandem {

Error state_not_held(const std::string& what) {
  return Error(ErrorKind::kFatal,
               what +
                   ": this server does not hold the migration's state as tandemd last read "
                   "it (a failover to a server that had not replayed it?). Check which server "
                   "the DSN reaches, then run again: tandemd rereads the state");
}

}  // namespace tandem
